"""Serving from the registry: hot reload on an alias move, a failed reload that keeps the
old model serving, and champion/challenger in shadow and split modes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import mlflow
import pytest

from mlship.card import MODEL_FILE
from mlship.config.settings import Settings
from mlship.monitor import drift
from mlship.pipeline.artifacts import save_model
from mlship.pipeline.features import feature_frame
from mlship.pipeline.train import fit
from mlship.registry import runs, versions
from mlship.ship.launch import free_port
from tests.conftest import make_params, text_frame
from tests.processes import running
from tests.serving.conftest import card_for
from tests.serving.live import BIN, running_server

pytestmark = pytest.mark.integration
NAME = "reviews"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """A registry with two good versions of NAME."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder}/mlflow.db"
    settings = Settings(tracking_uri=uri, model_name=NAME)  # type: ignore[call-arg]
    params = make_params()
    registered = []
    for rows in (20, 25):
        frame = text_frame(rows)
        pipeline = fit(params, frame)
        example = feature_frame(frame.head(2), params.data)
        card = card_for(["great", "other"])
        profile = drift.profile(frame, params.data, None).model_dump(mode="json")
        saved = folder / f"model-{rows}"
        save_model(pipeline, card, saved)
        run = runs.log_training(settings, card, pipeline, example, profile, saved / MODEL_FILE)
        registered.append(
            versions.register(settings, run.run_id, run.model_uri, {"mlship.gate": "passed"})
        )
    return uri, registered


def _wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_follows_the_alias_and_survives_a_broken_version(
    store: tuple[str, list[str]], tmp_path: Path
) -> None:
    uri, (first, second) = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.set_registered_model_alias(NAME, "champion", first)
    env = {"MLSHIP_TRACKING_URI": uri, "MLSHIP_RELOAD_SECONDS": "0.5"}
    with running_server(
        "--model", f"models:/{NAME}@champion", env=env, log=tmp_path / "log"
    ) as url:
        model = httpx.get(f"{url}/model").json()
        assert (model["version"], model["alias"]) == (first, "champion")
        assert model["run_id"] and model["metrics"] == {}

        # when the alias moves / then the new version is loaded, warmed and swapped in
        client.set_registered_model_alias(NAME, "champion", second)
        _wait_for(lambda: httpx.get(f"{url}/model").json()["version"] == second)
        answer = httpx.post(f"{url}/predict", json={"review": "great taste"})
        assert answer.json()["version"] == second

        # when the alias moves to a version that cannot be loaded
        run_id = client.get_model_version(NAME, second).run_id
        broken = client.create_model_version(NAME, str(tmp_path / "missing"), run_id=run_id)
        client.set_registered_model_alias(NAME, "champion", broken.version)
        _wait_for(lambda: httpx.get(f"{url}/model").json()["reload_error"] is not None)
        # then the old model keeps serving, and the failure shows in /model and the metrics
        assert httpx.get(f"{url}/model").json()["version"] == second
        assert httpx.post(f"{url}/predict", json={"review": "stale"}).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert f'model_reload_failures_total{{model="{NAME}",version="{second}"}}' in metrics
        # and the broken version is tried again only after a back-off, not on every poll
        error = httpx.get(f"{url}/model").json()["reload_error"]
        assert error["version"] == str(broken.version) and error["retry_in_seconds"] >= 1.0
        time.sleep(1.5)  # three polls
        failures = [
            line
            for line in httpx.get(f"{url}/metrics").text.splitlines()
            if line.startswith("model_reload_failures_total{")
        ]
        assert failures and float(failures[0].split()[-1]) <= 2.0

        # when the alias returns to the version being served / then the error clears
        client.set_registered_model_alias(NAME, "champion", second)
        _wait_for(lambda: httpx.get(f"{url}/model").json()["reload_error"] is None)


def test_a_server_started_on_a_broken_version_recovers_when_the_alias_is_fixed(
    store: tuple[str, list[str]], tmp_path: Path
) -> None:
    uri, (first, _second) = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = client.get_model_version(NAME, first).run_id
    broken = client.create_model_version(NAME, str(tmp_path / "missing"), run_id=run_id)
    client.set_registered_model_alias(NAME, "starting", broken.version)
    env = {"MLSHIP_TRACKING_URI": uri, "MLSHIP_RELOAD_SECONDS": "1"}
    port = free_port()
    command = [
        str(BIN / "mlship"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        f"models:/{NAME}@starting",
    ]
    url = f"http://127.0.0.1:{port}"
    # given a server whose alias points at a version that cannot load: not ready
    with running(command, f"{url}/health", ready_timeout=90, env=env):
        _wait_for(lambda: httpx.get(f"{url}/ready").json()["status"] == "failed")
        # when the alias is fixed / then it loads the good version and turns ready
        client.set_registered_model_alias(NAME, "starting", first)
        _wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, timeout=60)
        assert httpx.get(f"{url}/model").json()["version"] == first


def _predictions_by_version(metrics: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("predictions_total{") and 'status="ok"' in line:
            version = line.split('version="')[1].split('"')[0]
            found[version] = float(line.split()[-1])
    return found


@pytest.mark.parametrize("mode", ["shadow", "split"])
def test_champion_and_challenger(store: tuple[str, list[str]], mode: str) -> None:
    uri, (first, second) = store
    args = (
        "--model",
        f"models:/{NAME}/{first}",
        "--challenger",
        f"models:/{NAME}/{second}",
        "--challenger-mode",
        mode,
        "--challenger-weight",
        "1.0",
    )
    with running_server(*args, env={"MLSHIP_TRACKING_URI": uri}) as url:
        _wait_for(lambda: all(m.get("version") for m in httpx.get(f"{url}/model").json()["models"]))
        answered_by = {
            httpx.post(f"{url}/predict", json={"review": "tasty"}).json()["version"]
            for _ in range(10)
        }
        if mode == "shadow":  # the shadow scoring finishes after the answers
            _wait_for(
                lambda: (
                    sum(_predictions_by_version(httpx.get(f"{url}/metrics").text).values()) >= 20
                )
            )
        counted = _predictions_by_version(httpx.get(f"{url}/metrics").text)
    if mode == "shadow":  # the champion answers; the challenger scores every request too
        assert answered_by == {first}
        assert counted == {first: 10.0, second: 10.0}
    else:  # with weight 1.0 the challenger answers everything
        assert answered_by == {second}
        assert counted == {second: 10.0}
