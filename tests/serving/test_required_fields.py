"""A request that leaves out a feature column is refused, naming it, in each protocol's own
shape; a column params.yaml declares optional may be left out. /openapi.json says which
fields are required, with their types and an example row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlship.card import ModelCard
from mlship.config.settings import Settings
from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from mlship.serving.app import create_app
from tests.conftest import make_params
from tests.serving.conftest import wait_ready
from tests.unit.pipeline.test_train import TABULAR, tabular_frame

V2 = "/v2/models/penguins/infer"
EXAMPLE = {"island": "north", "mass": 29.5, "depth": 3.0}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Island is optional (params.yaml optional_columns); mass and depth are required."""
    folder = tmp_path_factory.mktemp("penguins")
    frame = tabular_frame().assign(depth=lambda f: f["mass"] / 10)
    data = {**TABULAR["data"], "numeric_columns": ["mass", "depth"], "optional_columns": ["island"]}
    params = make_params(train={"model": {"kind": "gradient_boosting", "max_iter": 20}}, data=data)
    card = ModelCard.model_validate(
        {
            "name": "penguins",
            "target": "species",
            "classes": ["a", "b", "c"],
            "example": EXAMPLE,
            "features": {
                "categorical": ["island"],
                "numeric": ["mass", "depth"],
                "optional": ["island"],
            },
        }
    )
    save_model(fit(params, frame), card, folder)
    with TestClient(create_app(str(folder), Settings()), raise_server_exceptions=False) as served:
        wait_ready(served)
        yield served


def _v2(**columns: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": name,
                "shape": [1],
                "data": [value],
                "datatype": "BYTES" if isinstance(value, str) else "FP64",
            }
            for name, value in columns.items()
        ]
    }


def test_plain_predict_names_every_missing_field(client: TestClient) -> None:
    empty = client.post("/predict", json={})
    assert empty.status_code == 422
    assert empty.json()["detail"] == "body: missing required field(s) ['mass', 'depth']"
    some = client.post("/predict", json={"island": "north", "mass": 10.0})
    assert some.status_code == 422 and "['depth']" in some.json()["detail"]


def test_a_record_that_leaves_a_field_out_is_named_by_its_place(client: TestClient) -> None:
    rows = [{"mass": 10.0, "depth": 1.0}, {"mass": 20.0}]
    answer = client.post("/predict", json=rows)
    assert answer.status_code == 422
    assert answer.json()["detail"] == "body[1]: missing required field(s) ['depth']"


def test_an_optional_field_may_be_left_out_or_null(client: TestClient) -> None:
    left_out = client.post("/predict", json={"mass": 10.0, "depth": 1.0})
    assert left_out.status_code == 200, left_out.text
    assert left_out.json()["label"] in {"a", "b", "c"}
    null = client.post("/predict", json={"island": None, "mass": 10.0, "depth": 1.0})
    assert null.json()["label"] == left_out.json()["label"]


def test_mlflow_scoring_refuses_a_missing_field_in_its_error_shape(client: TestClient) -> None:
    for body in (
        {"dataframe_records": [{"island": "north", "mass": 10.0}]},
        {"dataframe_split": {"columns": ["mass"], "data": [[10.0]]}},
    ):
        answer = client.post("/invocations", json=body)
        assert answer.status_code == 422, answer.text
        message = "input: missing required field(s) ['depth']"
        assert answer.json() == {"error_code": "BAD_REQUEST", "message": message}
    csv = client.post("/invocations", content="mass\n10\n", headers={"content-type": "text/csv"})
    assert csv.status_code == 422 and "['depth']" in csv.json()["message"]


def test_v2_refuses_a_missing_input_in_its_error_shape(client: TestClient) -> None:
    answer = client.post(V2, json=_v2(island="north"))
    assert answer.status_code == 400
    assert answer.json() == {"error": "inputs: missing required field(s) ['mass', 'depth']"}
    assert client.post(V2, json=_v2(mass=10.0, depth=1.0)).status_code == 200


def test_openapi_lists_the_required_fields_with_types_and_an_example(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    row = body["schema"]["oneOf"][0]
    assert row["required"] == ["mass", "depth"]
    assert row["properties"]["mass"]["type"] == ["number", "null"]
    assert row["properties"]["mass"]["examples"] == [29.5]
    assert row["properties"]["island"]["examples"] == ["north"]
    assert row["examples"] == [EXAMPLE]
