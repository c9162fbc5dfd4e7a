"""The team setup: the same pipeline against a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import team_stack
from tests.integration.conftest import BIN, Workspace

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    store = tmp_path / "server"
    store.mkdir()
    with team_stack.mlflow_server(
        store, f"sqlite:///{store}/mlflow.db", str(store / "artifacts")
    ) as url:
        yield url


def test_pipeline_tracks_to_a_team_server(workspace: Workspace, mlflow_server: str) -> None:
    # given MLflow's standard variable pointing at the team server
    workspace.env["MLFLOW_TRACKING_URI"] = mlflow_server
    workspace.use_example("penguins")
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
