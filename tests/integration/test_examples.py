"""Every shipped example through the whole local chain: train and evaluate (dvc repro), the
gate passing and failing on purpose, register, a local server answering all three
protocols, and a short load test against it."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlship.pipeline.features import feature_frame
from mlship.serving.model import data_params, load_directory
from mlship.serving.protocols import check_columns
from mlship.ship.launch import local_server
from tests.conftest import REPO
from tests.integration.conftest import BIN, Workspace

pytestmark = pytest.mark.integration

EXAMPLES = sorted(path.parent.name for path in (REPO / "examples").glob("*/params.yaml"))
IMPOSSIBLE = {  # thresholds no model meets: the gate must fail, naming them
    "classification": {"max_log_loss": 1e-9},
    "regression": {"max_rmse": 0.001, "max_mae": 0.001},
}


def _mlship(space: Workspace, *args: str) -> tuple[int, str]:
    done = space.run(str(BIN / "mlship"), *args)
    return done.returncode, done.stdout + done.stderr


def _edit(space: Workspace, section: str, values: dict[str, Any]) -> dict[str, Any]:
    path = space.root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section] = {**params.get(section, {}), **values}
    path.write_text(yaml.safe_dump(params))
    return params


def _complete_row(space: Workspace, columns: list[str]) -> dict[str, Any]:
    test = pd.read_parquet(space.root / "data/raw/test.parquet")
    row = test[columns].dropna().iloc[0]
    return {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}


def _v2_inputs(card: dict[str, Any], row: dict[str, Any]) -> list[dict[str, Any]]:
    features = card["features"]
    return [
        {
            "name": c,
            "shape": [1],
            "datatype": "FP64" if c in features["numeric"] else "BYTES",
            "data": [row[c] if c in features["numeric"] else str(row[c])],
        }
        for c in features["text"] + features["categorical"] + features["numeric"]
    ]


def _served_paths_match_the_pipeline(space: Workspace) -> None:
    served = load_directory(space.root / "models", "m")
    served.warm()
    test = pd.read_parquet(space.root / "data/raw/test.parquet")
    columns = {c: [None if pd.isna(v) else v for v in test[c]] for c in served.features.columns}
    check_columns(served.features, columns, "test", len(test))
    frame = feature_frame(test, data_params(served.card))
    model = served.model
    expected = model.predict_proba(frame) if served.has_probabilities else model.predict(frame)
    for size in (1, 100, len(test)):  # single rows, the small path, one large batch
        stop = min(len(test), 300) if size == 1 else len(test)
        found = [
            served.predict({c: v[i : i + size] for c, v in columns.items()})
            for i in range(0, stop, size)
        ]
        got = np.concatenate(
            [
                f.probabilities
                if f.probabilities is not None
                else (f.values if f.values is not None else f.labels)
                for f in found
            ]
        )
        want = np.asarray(expected)[: len(got)]
        if got.dtype.kind in "fc":
            assert np.abs(got - want.astype(float)).max() <= 1e-6, (served.scoring_path, size)
        else:
            assert (got == want.astype(str)).all(), (served.scoring_path, size)


def test_every_example_is_tested() -> None:
    assert EXAMPLES == ["custom", "penguins", "regression", "reviews", "taxi"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_example_runs_the_whole_local_chain(workspace: Workspace, example: str) -> None:
    workspace.use_example(example)
    # when the pipeline runs / then the gate passes and the model registers
    workspace.repro()
    code, output = _mlship(workspace, "gate")
    assert code == 0, output
    assert _mlship(workspace, "register")[0] == 0
    card = json.loads((workspace.root / "models/model_card.json").read_text())
    task = card["task"]
    # and every serving path gives the pipeline's own answers on the whole test split
    _served_paths_match_the_pipeline(workspace)

    # and a local server answers all three protocols with the task's outputs
    columns = card["features"]["text"] + card["features"]["categorical"]
    columns += card["features"]["numeric"]
    row = _complete_row(workspace, columns)
    with local_server(workspace.root / "models", workers=1) as url:
        one = httpx.post(f"{url}/predict", json=row).json()
        mlflow = httpx.post(f"{url}/invocations", json={"dataframe_records": [row, row]}).json()
        v2 = httpx.post(
            f"{url}/v2/models/{card['name']}/infer", json={"inputs": _v2_inputs(card, row)}
        ).json()
        outputs = {o["name"]: o for o in v2["outputs"]}
        if task == "classification":
            assert one["label"] in card["classes"] and 0 < one["confidence"] <= 1
            assert mlflow["predictions"] == [one["label"]] * 2
            assert outputs["label"]["data"] == [one["label"]]
        else:
            assert math.isfinite(one["prediction"]) and "label" not in one
            assert mlflow["predictions"] == [pytest.approx(one["prediction"])] * 2
            assert outputs["prediction"]["datatype"] == "FP64"
            assert outputs["prediction"]["data"] == [pytest.approx(one["prediction"])]
        # and a short load test against it passes its (loose) budget
        _edit(
            workspace,
            "loadtest",
            {
                "users": 4,
                "spawn_rate": 4,
                "duration_seconds": 3,
                "min_requests": 20,
                "max_p95_ms": 2000,
                "max_p99_ms": 5000,
            },
        )
        code, output = _mlship(workspace, "loadtest", "--url", url)
        assert code == 0, output

    # when the thresholds cannot be met / then the gate fails with exit 1, naming them
    _edit(workspace, "gate", IMPOSSIBLE[task])
    code, output = _mlship(workspace, "gate")
    assert code == 1, output
    failed = json.loads((workspace.root / "reports/gate.json").read_text())["failed"]
    assert {name.split()[0] for name in failed} == {k.split("_", 1)[1] for k in IMPOSSIBLE[task]}
