"""Property tests of the request parsers: whatever bytes or JSON a client sends, they either
return well-typed columns or raise RequestError — never anything else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlship.card import Category, Features
from mlship.serving import protocols
from mlship.serving.errors import RequestError

# island may be left out (params.yaml optional_columns); review and mass are required
FEATURES = Features(
    text=("review",), categorical=("island",), numeric=("mass",), optional=("island",)
)
# the same columns under a data contract: no missing mass, a closed set of islands
CONTRACT = FEATURES.model_copy(
    update={
        "nullable": ("island",),
        "categories": {"island": Category(values=("Biscoe", "Dream"), unknown="refuse")},
    }
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
NAMES = st.sampled_from(["review", "island", "mass", "other"])


def _only_bad_requests(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except RequestError as error:  # the typed errors each protocol maps to its shape
        assert error.message
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_as_json_or_are_refused(body: bytes) -> None:
    _only_bad_requests(protocols.parse_json, body)
    _only_bad_requests(protocols.mlflow_csv, body)


@pytest.mark.parametrize("features", [FEATURES, CONTRACT], ids=["types", "contract"])
@settings(max_examples=300, deadline=None)
@given(payload=JSON)
def test_any_json_through_every_protocol(features: Features, payload: Any) -> None:
    body = json.dumps(payload).encode()
    for parse in (
        lambda: protocols.predict_payload(features, protocols.parse_json(body))[0],
        lambda: protocols.mlflow_json(features, protocols.parse_json(body)),
        lambda: protocols.v2_columns(features, protocols.parse_json(body), b""),
    ):
        columns = _only_bad_requests(parse)
        if columns is not None:
            checked = _only_bad_requests(protocols.check_columns, features, columns, "x", 50)
            _check(features, checked, columns)


@pytest.mark.parametrize("features", [FEATURES, CONTRACT], ids=["types", "contract"])
@settings(max_examples=300, deadline=None)
@given(columns=st.dictionaries(NAMES, st.lists(JSON, max_size=3), max_size=4))
def test_checked_columns_hold_the_types_the_model_takes(
    features: Features, columns: dict[str, list[Any]]
) -> None:
    checked = _only_bad_requests(protocols.check_columns, features, columns, "x", 50)
    _check(features, checked, columns)


def _check(
    features: Features, checked: protocols.Checked | None, columns: dict[str, list[Any]]
) -> None:
    if checked is None:
        return
    assert all(isinstance(v, str) for v in columns["review"])
    assert all(v is None or isinstance(v, str) for v in columns["island"])
    assert all(isinstance(v, float) and not math.isinf(v) for v in columns["mass"])
    assert {len(values) for values in columns.values()} == {checked.rows}
    if features is CONTRACT:  # what the contract forbids never reaches the model
        assert not any(math.isnan(v) for v in columns["mass"])
        assert set(columns["island"]) <= {"Biscoe", "Dream", None}
        assert checked.unknown == ()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=4), st.binary(max_size=12))
def test_binary_bytes_tensors_decode_or_are_refused(elements: list[bytes], noise: bytes) -> None:
    body = b"".join(len(e).to_bytes(4, "little") + e for e in elements) + noise
    tensor = {
        "name": "review",
        "datatype": "BYTES",
        "shape": [len(elements)],
        "parameters": {"binary_data_size": len(body)},
    }
    _only_bad_requests(protocols.v2_columns, FEATURES, {"inputs": [tensor]}, body)


@given(JSON)
def test_flatten_keeps_row_major_order(data: Any) -> None:
    def reference(items: list[Any]) -> list[Any]:
        return [
            x for item in items for x in (reference(item) if isinstance(item, list) else [item])
        ]

    if isinstance(data, list):
        assert protocols._flatten(data) == reference(data)


def _one_at_a_time(value: Any) -> float | None:
    problems = protocols._Problems()
    number = float(protocols._value(FEATURES, "mass", value, "x", problems))
    return None if problems.count else number


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=2),
        min_size=1,
        max_size=12,
    )
)
def test_a_numeric_column_reads_as_its_values_one_at_a_time(values: list[Any]) -> None:
    """The whole-column NumPy conversion gives what judging each value alone gives."""
    columns = {"review": ["x"] * len(values), "mass": list(values)}
    checked = _only_bad_requests(protocols.check_columns, FEATURES, columns, "x", 50)
    alone = [_one_at_a_time(v) for v in values]
    if checked is None:
        assert None in alone
    else:
        for checked, single in zip(columns["mass"], alone, strict=True):
            assert single is not None
            assert checked == single or (math.isnan(checked) and math.isnan(single))
