"""Each class of hostile request found by hand: every one is a 4xx naming the problem, never
a 500, and none is silently accepted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
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

V2 = "/v2/models/mlship-model/infer"
JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}


def _text(tensor: str = '"data": ["x"]', **extra: str) -> str:
    fields = "".join(f', "{k}": {v}' for k, v in extra.items())
    return (
        '{"inputs": [{"name": "review", "datatype": "BYTES", "shape": [1], '
        + tensor
        + "}]"
        + fields
        + "}"
    )


TEXT_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "JSON nested 5,000 deep",
        "/predict",
        {"content": "[" * 5000 + "]" * 5000, "headers": JSON},
        422,
        "nested deeper than 32",
    ),
    (
        "an integer of 5,000 digits",
        "/predict",
        {"content": '{"review": "x", "n": ' + "9" * 5000 + "}", "headers": JSON},
        422,
        "invalid JSON",
    ),
    ("NaN as the V2 id", V2, {"content": _text(id="NaN")}, 400, "NaN is not a JSON number"),
    ("1e999 as the V2 id", V2, {"content": _text(id="1e999")}, 400, "number is infinity"),
    ("an object as the V2 id", V2, {"content": _text(id='{"a": 1}')}, 400, "id: expected text"),
    ("V2 outputs not a list", V2, {"content": _text(outputs="5")}, 400, "outputs: expected"),
    (
        "V2 outputs of bare names",
        V2,
        {"content": _text(outputs='["label"]')},
        400,
        "outputs[0]: expected an object",
    ),
    (
        "an unknown V2 output",
        V2,
        {"content": _text(outputs='[{"name": "logits"}]')},
        400,
        "unknown output",
    ),
    (
        "V2 parameters a list",
        V2,
        {"content": _text('"data": ["x"], "parameters": [1]')},
        400,
        "parameters: expected an object",
    ),
    (
        "binary_data_size text",
        V2,
        {"content": _text('"parameters": {"binary_data_size": "x"}')},
        400,
        "expected a size",
    ),
    (
        "binary_data_size past the data",
        V2,
        {"content": _text('"parameters": {"binary_data_size": 10}')},
        400,
        "binary bytes are left",
    ),
    (
        "a BYTES element longer than its data",
        V2,
        {
            "content": _text('"parameters": {"binary_data_size": 6}').encode()
            + b"\xff\x00\x00\x00ab",
            "headers": {
                "inference-header-content-length": str(
                    len(_text('"parameters": {"binary_data_size": 6}'))
                )
            },
        },
        400,
        "declares 255 bytes",
    ),
    (
        "an Inference-Header-Content-Length of 5,000 digits",
        V2,
        {"content": _text(), "headers": {"inference-header-content-length": "9" * 5000}},
        400,
        "out of range",
    ),
    (
        "an Inference-Header-Content-Length in other digits",
        V2,
        {"content": _text(), "headers": {"inference-header-content-length": "²".encode("latin-1")}},
        400,
        "not a whole number",
    ),
    (
        "dataframe_split columns that are numbers",
        "/invocations",
        {"json": {"dataframe_split": {"columns": [1], "data": [["a"]]}}},
        400,
        "expected column names",
    ),
    (
        "dataframe_split columns that are lists",
        "/invocations",
        {"json": {"dataframe_split": {"columns": [["x"]], "data": [["a"]]}}},
        400,
        "expected column names",
    ),
    (
        "a CSV field over the csv limit",
        "/invocations",
        {"content": "review\n" + "x" * 200_000 + "\n", "headers": CSV},
        400,
        "field larger than",
    ),
    (
        "invalid UTF-8 in CSV",
        "/invocations",
        {"content": b"review\n\xff\xfe bad\n", "headers": CSV},
        400,
        "not valid UTF-8",
    ),
    (
        "a repeated CSV header",
        "/invocations",
        {"content": "review,review\na,b\n", "headers": CSV},
        400,
        "more than once",
    ),
    (
        "MLflow params not an object",
        "/invocations",
        {"json": {"inputs": ["x"], "params": [1]}},
        400,
        "params: expected an object",
    ),
]
NUMERIC_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "Infinity in a number field",
        "/predict",
        {"content": '{"island": "north", "mass": Infinity}', "headers": JSON},
        422,
        "Infinity is not a JSON number",
    ),
    (
        "1e999 in a number field",
        "/predict",
        {"content": '{"island": "north", "mass": 1e999}', "headers": JSON},
        422,
        "number is infinity",
    ),
    (
        "an integer too large for a float",
        "/predict",
        {"content": '{"island": "north", "mass": ' + "9" * 400 + "}", "headers": JSON},
        422,
        "number is infinity",
    ),
    (
        "inf in a CSV number",
        "/invocations",
        {"content": "island,mass\nnorth,inf\n", "headers": CSV},
        400,
        "expected a finite number",
    ),
]


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[dict[str, Any]]:
    tabular = tmp_path_factory.mktemp("tabular")
    params = make_params(train={"model": {"kind": "gradient_boosting", "max_iter": 20}}, **TABULAR)
    card = ModelCard.model_validate(
        {
            "features": {"categorical": ["island"], "numeric": ["mass"]},
            "target": "species",
            "classes": ["a", "b", "c"],
        }
    )
    save_model(fit(params, tabular_frame()), card, tabular)
    with (
        TestClient(create_app(str(model_dir), Settings()), raise_server_exceptions=False) as text,
        TestClient(create_app(str(tabular), Settings()), raise_server_exceptions=False) as numeric,
    ):
        wait_ready(text)
        wait_ready(numeric)
        yield {"text": text, "numeric": numeric}


@pytest.mark.parametrize(
    ("model", "case"),
    [("text", case) for case in TEXT_CASES] + [("numeric", case) for case in NUMERIC_CASES],
    ids=lambda value: value if isinstance(value, str) else value[0],
)
def test_a_hostile_request_is_a_4xx_naming_the_problem(
    clients: dict[str, Any], model: str, case: tuple[str, str, dict[str, Any], int, str]
) -> None:
    _, path, request, status, message = case
    answer = clients[model].post(path, **request)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert message in str(body.get("detail") or body.get("message") or body.get("error"))
