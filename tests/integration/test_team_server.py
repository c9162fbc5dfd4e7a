"""The team setup: the same pipeline against a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlship.launch import free_port
from tests.conftest import REPO
from tests.integration.conftest import BIN, Workspace
from tests.processes import running

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]

STARTUP_SECONDS = 180


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "mlflow"), "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
        "--artifacts-destination", str(store / "artifacts"),
    ]  # fmt: skip
    # the GenAI job consumers (six processes) are not needed to track runs
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with running(command, f"{url}/health", ready_timeout=STARTUP_SECONDS, stop_timeout=30,
                 env=env, log=store / "server.log"):  # fmt: skip
        yield url


def test_pipeline_tracks_to_a_team_server(workspace: Workspace, mlflow_server: str) -> None:
    # given MLflow's standard variable pointing at the team server
    workspace.env["MLFLOW_TRACKING_URI"] = mlflow_server
    workspace.use_params(REPO / "examples/penguins/params.yaml")
    # when the pipeline runs
    workspace.repro()
    # then nothing was tracked locally
    assert not (workspace.root / "mlruns").exists()
    # and the server holds the run, its metrics, its evaluation files and the model
    card = json.loads((workspace.root / "models/model_card.json").read_text())
    assert card["mlflow"]["tracking_uri"] == mlflow_server
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(card["mlflow"]["run_id"])
    metrics = json.loads((workspace.root / "metrics/evaluate.json").read_text())
    assert run.data.metrics["macro_f1"] == metrics["macro_f1"]
    assert run.data.params["data.target"] == "species"
    evaluation = {item.path for item in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/evaluate.json" in evaluation
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert model.metadata.get_input_schema().input_names()[:2] == ["island", "sex"]
    # and the summary links to the run on the server
    summary = workspace.run(str(BIN / "mlship"), "summary")
    assert f"{mlflow_server}/#/experiments/" in summary.stdout.replace("\n", "")
