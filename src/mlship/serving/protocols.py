"""Request payloads of the three protocols -> columns of feature values. Pure functions.

Every protocol ends in the same shape, `Columns` (column name -> list of values), checked
against the model's declared features, so the three routes share one validation and one
batcher. Errors raise InvalidRequestError naming the field; each route renders it in its
protocol's error shape. Nothing a client sends may raise anything else: JSON is parsed with
limits (nesting depth, no NaN/Infinity literals, Python's limit on integer digits), every
optional field's type is checked, numbers must be finite, text must be valid UTF-8.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import orjson

from mlship.card import Features
from mlship.serving.errors import InvalidRequestError, MissingFieldsError, TooLargeError
from mlship.serving.model import Columns

MAX_DEPTH = 32  # JSON nesting: deep enough for any protocol here, far from recursion limits
_NESTED = (dict, list)  # the containers parsed JSON holds (orjson makes no subclasses)
_PLAIN_NUMBERS = frozenset({int, float, type(None)})  # None: a missing value
# a field a record left out: refused, unless params.yaml declares the column optional
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


def _no_constant(name: str) -> NoReturn:
    raise InvalidRequestError(f"invalid JSON: {name} is not a JSON number; send finite numbers")


def parse_json(body: bytes) -> Any:
    """JSON with limits; InvalidRequestError names what is wrong. orjson parses (several times
    faster than the standard library, and it refuses NaN, Infinity and depth past 1024 by
    itself); a body it refuses is parsed again by the standard library only to say why."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _why_not_json(body, error) from error
    _check_depth(payload)
    return payload


def _why_not_json(body: bytes, refused: Exception) -> InvalidRequestError:
    if "depth limit" in str(refused):
        return InvalidRequestError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    try:
        json.loads(body, parse_constant=_no_constant)
    except InvalidRequestError as error:
        return error
    except RecursionError:
        return InvalidRequestError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError, too many digits
        return InvalidRequestError(f"invalid JSON: {error}")
    return InvalidRequestError(f"invalid JSON: {refused}")


def _check_depth(payload: Any) -> None:
    pending = [(payload, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidRequestError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            kinds = set(map(type, children))  # one C-speed pass: a list of scalars ends here
            if dict in kinds or list in kinds:
                pending += [(child, depth + 1) for child in children if type(child) in _NESTED]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{where}: expected a number, got {value!r}"[:300])
    try:
        number = float(value)
    except OverflowError as error:
        raise InvalidRequestError(f"{where}: the number is too large") from error
    if math.isinf(number):
        raise InvalidRequestError(f"{where}: expected a finite number, got {number}")
    return number  # NaN (from CSV or binary data) reads as a missing value


MAX_PROBLEMS = 20  # named in one error; the rest are counted


@dataclass(frozen=True)
class UnknownCategory:
    """A category the training data never had, in a column whose policy is `flag`."""

    row: int
    column: str
    value: str


@dataclass(frozen=True)
class Checked:
    """A request that passed the checks: its row count and the unknown categories it holds
    that were answered with a warning."""

    rows: int
    unknown: tuple[UnknownCategory, ...] = ()

    def warnings(self, row: int | None = None) -> list[dict[str, Any]]:
        """The warnings as JSON: for one row (without its index), or all with their rows."""
        return [
            {"column": u.column, "value": u.value, "issue": "unknown category"}
            | ({} if row is not None else {"row": u.row})
            for u in self.unknown
            if row is None or u.row == row
        ]


class _Problems:
    """Every bad value of a request, so one answer names them all."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.found) < MAX_PROBLEMS:
            self.found.append(message[:300])

    def raise_any(self) -> None:
        if self.count:
            more = self.count - len(self.found)
            tail = f"; and {more} more" if more else ""
            raise InvalidRequestError("; ".join(self.found) + tail)


_CODED_AS = {"text": (str,), "integer": (str, int), "boolean": (str, bool)}


def _category(features: Features, column: str, value: Any, where: str, problems: _Problems) -> Any:
    """A category as text, or None (missing); a bad one is added to `problems`."""
    if value is None:
        if not features.takes_missing(column):
            problems.add(f"{where}.{column}: a missing value is not allowed (data contract)")
        return None
    rule = features.categories.get(column)
    if rule is None:  # a card from before the contract was kept
        if isinstance(value, str | int | bool):
            return str(value)
    elif isinstance(value, _CODED_AS[rule.coded_as]) and not (
        rule.coded_as == "integer" and isinstance(value, bool)
    ):
        return str(value)
    kind = "text" if rule is None or rule.coded_as == "text" else f"{rule.coded_as} or text"
    problems.add(
        f"{where}.{column}: expected a category ({kind}), got {type(value).__name__} {value!r}"
    )
    return None


def _value(features: Features, column: str, value: Any, where: str, problems: _Problems) -> Any:
    """One feature value in the type the model expects; a bad one is added to `problems`."""
    if value is MISSING:
        if column not in features.optional:
            problems.add(f"{where}: missing required field(s) [{column!r}]")
            return None
        value = None
    if column in features.text:
        if not isinstance(value, str):
            problems.add(f"{where}.{column}: expected text, got {type(value).__name__}")
        return value
    if column in features.categorical:
        return _category(features, column, value, where, problems)
    if value is None:
        if not features.takes_missing(column):
            problems.add(f"{where}.{column}: a missing value is not allowed (data contract)")
        return math.nan
    try:
        return _number(value, f"{where}.{column}")
    except InvalidRequestError as error:
        problems.add(error.message)
        return math.nan


def check_columns(features: Features, columns: Columns, where: str, max_rows: int) -> Checked:
    """Validate the fields once, then the row count (413 past `max_rows`), then every value
    against the model's contract (card.Features): types, missing values, categories. A
    required column left out is refused (MissingFieldsError, naming every one); an optional
    one (params.yaml `data.optional_columns`) is filled with missing values. Every bad value
    is named in one InvalidRequestError. Converts the columns in place."""
    unknown = sorted(set(columns) - set(features.columns))
    if unknown:
        raise InvalidRequestError(
            f"{where}: unknown field(s) {unknown[:20]}; expected {list(features.columns)}"
        )
    # left out of the request, or out of every record (records_to_columns marks gaps MISSING;
    # all() stops at the first value, so a present column costs one look)
    missing = [
        c
        for c in features.columns
        if c not in features.optional and (c not in columns or _all_missing(columns[c]))
    ]
    if missing:
        raise MissingFieldsError(where, missing)
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise InvalidRequestError(f"{where}: columns have different lengths {sorted(lengths)}")
    rows = lengths.pop()
    if rows == 0:
        raise InvalidRequestError(f"{where}: no rows")
    if rows > max_rows:
        raise TooLargeError(f"{rows} rows exceed the limit of {max_rows} per request")
    problems = _Problems()
    for column in features.columns:
        if column not in columns:  # an optional field left out: a missing value
            columns[column] = [None if column in features.categorical else math.nan] * rows
            continue
        values = columns[column]
        if column in features.numeric:
            numbers = _plain_numbers(values)
            if numbers is not None and (features.takes_missing(column) or None not in values):
                columns[column] = numbers
                continue
        elif _already_valid(features, column, values):
            continue
        columns[column] = [
            _value(features, column, v, f"{where}[{i}]", problems) for i, v in enumerate(values)
        ]
    unknown_categories = _unknown_categories(features, columns, where, problems)
    problems.raise_any()
    return Checked(rows, unknown_categories)


def _unknown_categories(
    features: Features, columns: Columns, where: str, problems: _Problems
) -> tuple[UnknownCategory, ...]:
    """Categories the training data never had: problems where the column refuses them, the
    flagged ones returned."""
    flagged: list[UnknownCategory] = []
    for column, rule in features.categories.items():
        values = columns.get(column)
        if values is None or rule.unknown == "accept":
            continue
        unseen = set(values) - rule.known - {None}
        if not unseen:
            continue
        for i, value in enumerate(values):
            if value in unseen:
                if rule.unknown == "refuse":
                    shown = ", ".join(rule.values[:12]) + (", ..." if len(rule.values) > 12 else "")
                    problems.add(
                        f"{where}[{i}].{column}: unknown category {value!r} (known: {shown})"
                    )
                else:
                    flagged.append(UnknownCategory(i, column, value))
    return tuple(flagged)


def _all_missing(values: list[Any]) -> bool:
    return bool(values) and all(value is MISSING for value in values)


def _already_valid(features: Features, column: str, values: list[Any]) -> bool:
    """A whole column that needs no conversion (the common case), judged in one pass."""
    kinds = set(map(type, values))
    if column in features.text:
        return kinds <= {str}
    if features.takes_missing(column):  # categorical
        return kinds <= {str, type(None)}
    return kinds <= {str}


def _plain_numbers(values: list[Any]) -> list[float] | None:
    """A numeric column of ints, floats and nulls as floats (null: NaN) in one NumPy pass;
    None when a value needs judging on its own (a bool, text, an infinite or huge number)."""
    if not set(map(type, values)) <= _PLAIN_NUMBERS:
        return None
    try:
        numbers = np.asarray(values, dtype=float)
    except OverflowError:  # an integer past float's range
        return None
    return None if np.isinf(numbers).any() else numbers.tolist()


def records_to_columns(features: Features, records: Any, where: str) -> Columns:
    """A list of objects as columns: the features and any other field a record names, MISSING
    where a record leaves one out (check_columns then judges the fields and values)."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InvalidRequestError(f"{where}: expected a list of objects")
    names = list(dict.fromkeys([*features.columns, *(n for record in records for n in record)]))
    return {name: [record.get(name, MISSING) for record in records] for name in names}


# --- plain /predict -----------------------------------------------------------------------


def predict_payload(features: Features, payload: Any) -> tuple[Columns, bool]:
    """One object or a list of objects; returns (columns, whether a single object was sent)."""
    single = isinstance(payload, dict)
    records = [payload] if single else payload
    return records_to_columns(features, records, "body"), single


# --- MLflow scoring protocol ----------------------------------------------------------------

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def mlflow_json(features: Features, payload: Any) -> Columns:
    if not isinstance(payload, dict):
        raise InvalidRequestError("expected a JSON object with one of " + ", ".join(MLFLOW_FORMATS))
    given = [key for key in MLFLOW_FORMATS if key in payload]
    extra = sorted(set(payload) - set(MLFLOW_FORMATS) - {"params"})
    if len(given) != 1 or extra:
        raise InvalidRequestError(
            "the request must have exactly one of "
            + ", ".join(MLFLOW_FORMATS)
            + f" (and optionally params); got {sorted(payload)[:20]}"
        )
    if not isinstance(payload.get("params", {}), dict):
        raise InvalidRequestError("params: expected an object")
    key = given[0]
    body = payload[key]
    if key == "dataframe_split":
        if not isinstance(body, dict) or "columns" not in body or "data" not in body:
            raise InvalidRequestError(
                "dataframe_split: expected an object with 'columns' and 'data'"
            )
        names, data = body["columns"], body["data"]
        if not isinstance(names, list) or not isinstance(data, list):
            raise InvalidRequestError("dataframe_split: 'columns' and 'data' must be lists")
        if not all(isinstance(name, str) for name in names):
            raise InvalidRequestError("dataframe_split.columns: expected column names (text)")
        if len(set(names)) != len(names):
            raise InvalidRequestError("dataframe_split.columns: a column is named more than once")
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(names):
                raise InvalidRequestError(
                    f"dataframe_split.data[{i}]: expected {len(names)} values"
                )
        return {name: [row[j] for row in data] for j, name in enumerate(names)}
    if key == "dataframe_records":
        return records_to_columns(features, body, key)
    # instances / inputs: a list of records, a column dict, or bare values for one column
    if isinstance(body, dict):
        return {
            name: values if isinstance(values, list) else [values] for name, values in body.items()
        }
    if isinstance(body, list) and body and all(isinstance(item, dict) for item in body):
        return records_to_columns(features, body, key)
    if isinstance(body, list) and len(features.columns) == 1:
        return {features.columns[0]: body}
    raise InvalidRequestError(f"{key}: expected a list of objects or an object of columns")


def mlflow_csv(body: bytes) -> Columns:
    """A CSV body: valid UTF-8, a header naming each column once, equal-length rows."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequestError(
            f"text/csv: not valid UTF-8 (byte {error.start}): {error.reason}"
        ) from error
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        rows = list(reader)
    except StopIteration as error:
        raise InvalidRequestError("text/csv: empty body") from error
    except csv.Error as error:  # e.g. a field over csv.field_size_limit()
        raise InvalidRequestError(f"text/csv: line {reader.line_num}: {error}") from error
    if len(set(header)) != len(header):
        raise InvalidRequestError(f"text/csv: the header names a column more than once: {header}")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise InvalidRequestError(
                f"text/csv: row {i + 1} has {len(row)} values, header has {len(header)}"
            )
    columns: Columns = {name: [row[j] for row in rows] for j, name in enumerate(header)}
    return columns


def csv_numbers(features: Features, columns: Columns) -> Columns:
    """CSV carries text only: numeric columns are parsed, empty cells are missing."""
    for column in features.numeric:
        if column in columns:
            parsed = []
            for i, cell in enumerate(columns[column]):
                try:
                    parsed.append(float(cell) if cell != "" else None)
                except ValueError as error:
                    raise InvalidRequestError(
                        f"text/csv: {column}[{i}]: not a number: {cell[:50]!r}"
                    ) from error
            columns[column] = parsed
    for column in features.categorical:
        if column in columns:
            columns[column] = [cell if cell != "" else None for cell in columns[column]]
    return columns


# --- Open Inference Protocol V2 -------------------------------------------------------------

V2_TYPES = {"BYTES", "FP64", "FP32", "INT64", "INT32", "INT16", "INT8", "UINT8", "BOOL"}
V2_FORMATS = {
    "FP64": "d",
    "FP32": "f",
    "INT64": "q",
    "INT32": "i",
    "INT16": "h",
    "INT8": "b",
    "UINT8": "B",
    "BOOL": "?",
}


def _unpack_bytes(buffer: bytes, where: str) -> list[str]:
    """The binary tensor extension's BYTES layout: a 4-byte little-endian length, the bytes."""
    values, offset = [], 0
    while offset < len(buffer):
        if offset + 4 > len(buffer):
            raise InvalidRequestError(f"{where}: truncated BYTES element")
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if offset + length > len(buffer):
            raise InvalidRequestError(
                f"{where}: a BYTES element declares {length} bytes, {len(buffer) - offset} are left"
            )
        try:
            values.append(buffer[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError as error:
            raise InvalidRequestError(f"{where}: a BYTES element is not valid UTF-8") from error
        offset += length
    return values


def _unpack_numbers(buffer: bytes, datatype: str, where: str) -> list[float]:
    code = V2_FORMATS[datatype]
    size = struct.calcsize(code)
    if len(buffer) % size:
        raise InvalidRequestError(
            f"{where}: binary data is not a whole number of {datatype} values"
        )
    return [float(v) for v in struct.unpack(f"<{len(buffer) // size}{code}", buffer)]


def split_v2_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """JSON part and binary part of a V2 request (binary tensor extension when a length
    header is given)."""
    if header_length is None:
        json_part, binary = body, b""
    else:
        if not header_length.isascii() or not header_length.isdigit():
            raise InvalidRequestError("Inference-Header-Content-Length is not a whole number")
        # a body's length has at most 12 digits; Python refuses to read > 4300 of them
        size = int(header_length) if len(header_length) <= 12 else -1
        if not 0 < size <= len(body):
            raise InvalidRequestError("Inference-Header-Content-Length is out of range")
        json_part, binary = body[:size], body[size:]
    return parse_json(json_part), binary


def _optional_object(tensor: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    found = tensor.get(key)
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise InvalidRequestError(f"{where}.{key}: expected an object")
    return found


def v2_request(payload: Any) -> tuple[str | None, list[str] | None]:
    """The request's optional `id` (echoed) and requested output names; checked types."""
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise InvalidRequestError("expected an object with an 'inputs' list")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError("id: expected text")
    _optional_object(payload, "parameters", "request")
    outputs = payload.get("outputs")
    if outputs is None:
        return request_id, None
    if not isinstance(outputs, list):
        raise InvalidRequestError("outputs: expected a list of objects with a name")
    names = []
    for i, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidRequestError(f"outputs[{i}]: expected an object with a name")
        _optional_object(output, "parameters", f"outputs[{i}]")
        names.append(output["name"])
    return request_id, names


def v2_columns(features: Features, payload: Any, binary: bytes) -> Columns:
    v2_request(payload)
    columns: Columns = {}
    offset = 0
    for i, tensor in enumerate(payload["inputs"]):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise InvalidRequestError(f"{where}: expected an object")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str):
            raise InvalidRequestError(f"{where}.name: required")
        if name in columns:
            raise InvalidRequestError(f"{where}.name: input {name!r} is given more than once")
        if datatype not in V2_TYPES:
            raise InvalidRequestError(f"{where}.datatype: expected one of {sorted(V2_TYPES)}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise InvalidRequestError(f"{where}.shape: expected a list of non-negative integers")
        count = math.prod(shape)
        size = _optional_object(tensor, "parameters", where).get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidRequestError(f"{where}.parameters.binary_data_size: expected a size")
            if offset + size > len(binary):
                raise InvalidRequestError(
                    f"{where}.parameters.binary_data_size: {size} bytes, but only "
                    f"{len(binary) - offset} binary bytes are left"
                )
            chunk = binary[offset : offset + size]
            offset += size
            values: list[Any] = (
                _unpack_bytes(chunk, where)
                if datatype == "BYTES"
                else _unpack_numbers(chunk, datatype, where)
            )
        else:
            data = tensor.get("data")
            if not isinstance(data, list):
                raise InvalidRequestError(f"{where}.data: required (a list)")
            values = _flatten(data)
        if len(values) != count:
            raise InvalidRequestError(
                f"{where}: shape {shape} needs {count} values, got {len(values)}"
            )
        columns[name] = values
    if offset != len(binary):
        raise InvalidRequestError(f"{len(binary) - offset} binary bytes follow the last input")
    return columns


def _flatten(data: list[Any]) -> list[Any]:
    """Nested lists in row-major order (iterative: depth is bounded by parse_json)."""
    if not any(type(item) is list for item in data):  # already flat: the common case
        return data
    flat: list[Any] = []
    pending: list[Any] = [iter(data)]
    while pending:
        for item in pending[-1]:
            if isinstance(item, list):
                pending.append(iter(item))
                break
            flat.append(item)
        else:
            pending.pop()
    return flat
