"""The whole local pipeline, as `make pipeline` runs it, on the embedded defaults."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import yaml

from tests.integration.conftest import BIN, Workspace

pytestmark = pytest.mark.integration


def _json(space: Workspace, path: str) -> dict:  # type: ignore[type-arg]
    return json.loads((space.root / path).read_text())


def _digest(space: Workspace, *paths: str) -> str:
    hashed = hashlib.sha256()
    for path in paths:
        hashed.update((space.root / path).read_bytes())
    return hashed.hexdigest()


def test_default_pipeline_on_the_fine_food_reviews(workspace: Workspace) -> None:
    # when the pipeline runs on the shipped params
    workspace.repro()

    # then the data contract passed and the duplicates in the source were dropped
    assert _json(workspace, "data/reports/validate.json")["passed"] is True
    ingest = _json(workspace, "data/reports/ingest.json")
    assert ingest["rows_dropped"]["test_leaked_from_train"] == 7
    # and the model is useful on held-out reviews
    metrics = _json(workspace, "metrics/evaluate.json")
    assert metrics["rows"] == ingest["rows_kept"]["test"]
    assert metrics["accuracy"] > 0.75
    assert metrics["roc_auc"] > 0.85
    assert set(metrics["per_class"]) == {"great", "other"}
    predictions = pd.read_csv(workspace.root / "reports/predictions.csv")
    assert len(predictions) == metrics["rows"]
    # and the model card records what a reviewer needs
    card = _json(workspace, "models/model_card.json")
    assert card["classes"] == ["great", "other"]
    assert card["features"]["text"] == ["review"]
    assert "scikit-learn" in card["libraries"]

    # and MLflow holds the run: params, metrics, evaluation files and a usable model
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workspace.root}/mlruns/mlflow.db")
    run = mlflow.get_run(card["mlflow"]["run_id"])
    assert run.data.params["train.model.kind"] == "logistic_regression"
    assert run.data.metrics["accuracy"] == metrics["accuracy"]
    assert run.data.metrics["recall_other"] == metrics["per_class"]["other"]["recall"]
    client = mlflow.MlflowClient()
    logged = {item.path for item in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/predictions.csv" in logged
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    rows = pd.DataFrame({"review": ["Delicious, I reorder every month."] * 3 + ["Stale."] * 2})
    assert len(model.predict(rows)) == 5  # N rows in, N predictions out
    assert model.metadata.get_input_schema().input_names() == ["review"]

    # when nothing changed / then DVC runs no stage
    assert "Running stage" not in workspace.repro()
    # when gated and registered, as the main job does / then the shipped gate passes
    for command in ("gate", "register"):
        done = workspace.run(str(BIN / "mlship"), command)
        assert done.returncode == 0, done.stdout + done.stderr
    gate = _json(workspace, "reports/gate.json")
    assert gate["passed"] and gate["champion_version"] is None
    assert any(c["group"] == "behaviour" for c in gate["criteria"])
    # and the summary names the metrics, the gate verdict and the run
    summary = workspace.run(str(BIN / "mlship"), "summary")
    assert summary.returncode == 0, summary.stderr
    assert "accuracy" in summary.stdout
    assert "gate: passed" in summary.stdout
    assert card["mlflow"]["run_id"] in summary.stdout.replace("\n", "")


def test_a_tabular_multiclass_dataset_by_params_alone(workspace: Workspace) -> None:
    # given the penguins example copied over params.yaml, and nothing else changed
    workspace.use_example("penguins")
    # when the pipeline runs
    workspace.repro()
    # then a three-class model was trained with categorical and numeric features
    metrics = _json(workspace, "metrics/evaluate.json")
    assert set(metrics["per_class"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert metrics["accuracy"] > 0.9
    features = _json(workspace, "models/model_card.json")["features"]
    assert {kind: features[kind] for kind in ("text", "categorical", "numeric", "optional")} == {
        "text": [],
        "categorical": ["island", "sex"],
        "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
        "optional": [],
    }
    # and the categories the server's door will hold requests to, as training saw them
    assert set(features["categories"]) == {"island", "sex"}
    assert features["categories"]["island"]["values"] == ["Biscoe", "Dream", "Torgersen"]
    # and a short load test against a local server runs and reports (a loose budget: this
    # checks the mechanism; speed is measured in benchmarks/, not asserted on a busy CI box)
    params = yaml.safe_load((workspace.root / "params.yaml").read_text())
    params["loadtest"] = {
        "users": 4,
        "spawn_rate": 4,
        "duration_seconds": 4,
        "min_requests": 20,
        "max_p95_ms": 2000,
        "max_p99_ms": 5000,
    }
    (workspace.root / "params.yaml").write_text(yaml.safe_dump(params))
    done = workspace.run(str(BIN / "mlship"), "loadtest", "--target", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _json(workspace, "reports/loadtest.json")["target"] == "local server (models)"
    outputs = ("metrics/evaluate.json", "reports/predictions.csv", "data/raw/train.parquet")
    first = _digest(workspace, *outputs)
    # when forced to run again from scratch / then data, metrics and predictions are identical
    workspace.repro("--force")
    assert _digest(workspace, *outputs) == first


def test_a_contract_breach_stops_the_pipeline_before_training(workspace: Workspace) -> None:
    # given a contract that the data cannot meet
    params = (workspace.root / "params.yaml").read_text()
    (workspace.root / "params.yaml").write_text(
        params.replace("min_rows_per_class: 200", "min_rows_per_class: 5000")
    )
    # when the pipeline runs
    done = workspace.run(str(BIN / "dvc"), "repro")
    # then validate fails naming the rule, and no model is trained
    assert done.returncode != 0
    assert "min_rows_per_class" in done.stderr + done.stdout
    assert not (workspace.root / "models").exists()
    report = (workspace.root / "data/reports/validate.md").read_text()
    assert report.startswith("# Data contract: FAILED")


def test_a_failing_source_loses_no_earlier_output(workspace: Workspace) -> None:
    # given a reproduced pipeline
    workspace.use_example("penguins")
    workspace.repro()
    kept = ("data/raw/train.parquet", "data/raw/test.parquet", "data/reports/ingest.json")
    before = _digest(workspace, *kept)
    # when the source turns into a truncated file
    params = yaml.safe_load((workspace.root / "params.yaml").read_text())
    (workspace.root / "broken.csv.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    params["data"]["source"] = "broken.csv.gz"
    (workspace.root / "params.yaml").write_text(yaml.safe_dump(params))
    done = workspace.run(str(BIN / "dvc"), "repro")
    # then ingest fails naming the file, exit 2, and the previous splits are still there
    assert done.returncode != 0
    assert "broken.csv.gz: the file is truncated or damaged" in done.stdout + done.stderr
    assert _digest(workspace, *kept) == before


def test_a_failing_train_stage_keeps_the_released_model(workspace: Workspace) -> None:
    # given a reproduced pipeline
    workspace.use_example("penguins")
    workspace.repro()
    kept = ("models/model.skops", "models/model_card.json", "metrics/evaluate.json")
    before = _digest(workspace, *kept)
    # when a train param makes the fit fail
    params = yaml.safe_load((workspace.root / "params.yaml").read_text())
    params["train"]["model"] = {
        "kind": "estimator",
        "class": "sklearn.linear_model.LogisticRegression",
        "params": {"C": -1.0},
    }
    (workspace.root / "params.yaml").write_text(yaml.safe_dump(params))
    done = workspace.run(str(BIN / "dvc"), "repro")
    # then train fails, and the model and its metrics are still the previous ones
    assert done.returncode != 0
    assert "train" in done.stdout + done.stderr
    assert _digest(workspace, *kept) == before
    assert not list((workspace.root).glob(".models.*"))  # no half-written folder left
