"""The team setup of docs/teams.md for real: MLflow on PostgreSQL with its artifacts in an
S3-compatible store, a DVC remote in the same store, and a server following
models:/<name>@champion. The whole local chain runs against it: train, gate, register,
promote, serve, a second release picked up by hot reload, and the DVC remote restoring a
release after the cache is wiped."""

from __future__ import annotations

import hashlib
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml

from tests.integration.conftest import BIN, Workspace
from tests.integration.team_stack import mlflow_server, postgres, s3_server
from tests.serving.live import running_server

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]
ROW = {
    "island": "Biscoe",
    "sex": "female",
    "bill_length_mm": 45.1,
    "bill_depth_mm": 14.5,
    "flipper_length_mm": 215.0,
    "body_mass_g": 5000.0,
}


def _ok(space: Workspace, *command: str) -> str:
    done = space.run(*command)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _mlship(space: Workspace, *args: str) -> str:
    return _ok(space, str(BIN / "mlship"), *args)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _release(space: Workspace, approver: str) -> None:
    space.repro()
    _mlship(space, "gate")
    _mlship(space, "register")
    _mlship(space, "promote", "--approver", approver)


def _served_version(url: str, wanted: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        model = httpx.get(f"{url}/model").json()
        if str(model["version"]) == wanted or time.monotonic() > deadline:
            return dict(model)
        time.sleep(0.5)


def test_the_chain_on_postgresql_and_s3(workspace: Workspace, tmp_path: Path) -> None:
    with ExitStack() as stack:
        database = stack.enter_context(postgres())
        s3 = stack.enter_context(s3_server(tmp_path / "s3", "mlflow", "dvc"))
        tracking = stack.enter_context(
            mlflow_server(tmp_path, database, "s3://mlflow/artifacts", s3.env)
        )
        # given the pipeline pointed at the team server and a DVC remote on S3; the S3 keys
        # are DVC's only: MLflow's artifacts go through the tracking server
        workspace.env["MLFLOW_TRACKING_URI"] = tracking
        workspace.env.update({k: v for k, v in s3.env.items() if k.startswith("AWS_")})
        workspace.use_example("penguins")
        dvc = str(BIN / "dvc")
        _ok(workspace, dvc, "remote", "add", "-d", "team", "s3://dvc/store")
        _ok(workspace, dvc, "remote", "modify", "team", "endpointurl", s3.endpoint)

        # when a release is trained, gated, registered and promoted
        _release(workspace, "alice")
        client = mlflow.MlflowClient(tracking_uri=tracking)
        first = client.get_model_version_by_alias("penguins", "champion")
        # then PostgreSQL holds the registry and S3 the artifacts
        assert first.tags["mlship.approved_by"] == "alice"
        stored = [p.relative_to(tmp_path / "s3") for p in (tmp_path / "s3" / "mlflow").rglob("*")]
        assert any(p.name == "model.skops" for p in stored), stored

        # when the release's outputs are pushed to the remote, the cache and outputs wiped
        _ok(workspace, dvc, "push")
        model_file = workspace.root / "models" / "model.skops"
        released = _sha256(model_file)
        shutil.rmtree(workspace.root / ".dvc" / "cache")
        shutil.rmtree(workspace.root / "models")
        # then `dvc pull` restores exactly that release
        _ok(workspace, dvc, "pull")
        assert _sha256(model_file) == released

        # given a server following @champion through the team server
        env = {"MLFLOW_TRACKING_URI": tracking, "MLSHIP_RELOAD_SECONDS": "1"}
        with running_server(
            "--model",
            "models:/penguins@champion",
            "--workers",
            "1",
            env=env,
            log=tmp_path / "serve.log",
        ) as url:
            # then it serves the first release
            assert _served_version(url, str(first.version))["version"] == str(first.version)
            answer = httpx.post(f"{url}/predict", json=ROW)
            assert answer.status_code == 200 and answer.json()["label"] in {
                "Adelie",
                "Gentoo",
                "Chinstrap",
            }
            # when a second release is promoted / then the server reloads to it
            params = yaml.safe_load((workspace.root / "params.yaml").read_text())
            params["train"]["model"]["l2_regularization"] = 0.5
            (workspace.root / "params.yaml").write_text(yaml.safe_dump(params))
            _release(workspace, "bob")
            second = client.get_model_version_by_alias("penguins", "champion")
            assert second.version != first.version
            assert _served_version(url, str(second.version))["version"] == str(second.version)
            assert httpx.post(f"{url}/predict", json=ROW).status_code == 200
