"""The OpenAPI description of every request body and status code the routes answer.

The routes read raw bodies (parsing them ourselves is faster and names the failing field in
each protocol's own error shape), so FastAPI cannot infer their bodies: they are declared
here. Once the model is loaded, /openapi.json names its feature columns and their types,
so /docs and schema-driven clients (and fuzzers) aim at the real fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mlship.card import Features
from mlship.serving.protocols import MAX_DEPTH, V2_TYPES

Schema = dict[str, Any]
ERROR_DETAIL: Schema = {"type": "object", "properties": {"detail": {"type": "string"}}}
ERROR_MLFLOW: Schema = {
    "type": "object",
    "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
}
ERROR_V2: Schema = {"type": "object", "properties": {"error": {"type": "string"}}}
WHY = {
    400: "the request is not valid for this model (the message names the field)",
    401: "a bearer token is required (MLSHIP_API_TOKEN) and was missing or wrong",
    404: "no such model on this server",
    408: "the request body did not arrive in time",
    413: "the body or the number of rows is over the limit",
    415: "the content type is not JSON or CSV",
    409: "this request already has its feedback",
    422: "the request is not valid for this model (the message names the field)",
    429: "over this client's rate limit: retry after the Retry-After seconds",
    503: "the model is not loaded yet, or the feedback storage is full",
}


def responses(error: Schema, *codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"description": WHY[code], "content": {"application/json": {"schema": error}}}
        for code in codes
    }


CODED_AS = {"text": ["string"], "integer": ["string", "integer"], "boolean": ["string", "boolean"]}


def _coded(values: tuple[str, ...], coded_as: str) -> list[Any]:
    """The categories as the JSON numbers or booleans a request may also send them as."""
    if coded_as == "integer":
        return [int(v) for v in values if v.lstrip("-").isdigit()]
    if coded_as == "boolean":
        return [v == "True" for v in values if v in ("True", "False")]
    return []


def _value(features: Features | None, column: str, example: dict[str, Any]) -> Schema:
    """What the data contract lets a request send for one column (protocols.check_columns)."""
    if features is None or column in features.text:
        schema: Schema = {"type": "string", "description": "text"}
    elif column in features.numeric:
        schema = {"type": ["number"], "description": "numeric"}
    else:
        rule = features.categories.get(column)
        kinds = CODED_AS[rule.coded_as] if rule else ["string", "integer", "boolean"]
        schema = {"type": list(kinds), "description": "a category"}
        if rule is not None and rule.unknown == "refuse":
            schema["enum"] = [*rule.values, *_coded(rule.values, rule.coded_as)]
            schema["description"] += ": one of those the training data had"
        elif rule is not None and rule.unknown == "flag":
            schema["description"] += (
                "; one the training data never had is answered with a warning (known: "
                + ", ".join(rule.values[:20])
                + (", ..." if len(rule.values) > 20 else "")
                + ")"
            )
    if features is not None and features.takes_missing(column):
        schema["type"] = [*schema["type"], "null"]
        schema["description"] += "; null: missing"
        if "enum" in schema:
            schema["enum"].append(None)
    if example.get(column) is not None:
        schema["examples"] = [example[column]]
    return schema


def row_schema(features: Features | None, example: dict[str, Any] | None = None) -> Schema:
    """One row: every feature column is required but those params.yaml declares optional."""
    if features is None:
        return {"type": "object", "description": "the model's feature columns"}
    example = example or {}
    schema: Schema = {
        "type": "object",
        "properties": {c: _value(features, c, example) for c in features.columns},
        "required": [c for c in features.columns if c not in features.optional],
        "additionalProperties": False,
    }
    if example:
        schema["examples"] = [example]
    return schema


def predict_body(features: Features | None, example: dict[str, Any] | None = None) -> Schema:
    row = row_schema(features, example)
    return {"oneOf": [row, {"type": "array", "items": row, "minItems": 1}]}


def mlflow_body(features: Features | None, example: dict[str, Any] | None = None) -> Schema:
    row = row_schema(features, example)
    records = {"type": "array", "items": row, "minItems": 1}
    names = list(features.columns) if features else []
    split = {
        "type": "object",
        "required": ["columns", "data"],
        "properties": {
            "columns": {
                "type": "array",
                "items": {"type": "string", "enum": names} if names else {"type": "string"},
            },
            "data": {"type": "array", "items": {"type": "array"}},
        },
    }
    formats = {
        "dataframe_split": split,
        "dataframe_records": records,
        "instances": records,
        "inputs": records,
    }
    return {
        "oneOf": [
            {
                "type": "object",
                "required": [key],
                "additionalProperties": False,
                "properties": {key: body, "params": {"type": "object"}},
            }
            for key, body in formats.items()
        ]
    }


def v2_body(features: Features | None) -> Schema:
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string", "enum": list(features.columns)}
            if features
            else {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": sorted(V2_TYPES)},
            "data": {"type": "array"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
        },
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "description": f"JSON nested at most {MAX_DEPTH} levels",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
            },
        },
    }


def request_body(schemas: dict[str, Schema]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in schemas.items()},
        }
    }


def describe(
    app: FastAPI, features: Callable[[], tuple[Features, dict[str, Any]] | None]
) -> Callable[[], Schema]:
    """app.openapi: the generated document, with the loaded model's columns (and an example
    row) in the bodies (rebuilt until the model is loaded, then kept)."""

    def openapi() -> Schema:
        if app.openapi_schema is not None:
            return app.openapi_schema
        loaded = features()
        known, example = loaded if loaded is not None else (None, {})
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        bodies = {
            ("/predict", "application/json"): predict_body(known, example),
            ("/invocations", "application/json"): mlflow_body(known, example),
            ("/v2/models/{name}/infer", "application/json"): v2_body(known),
        }
        for (path, media), schema in bodies.items():
            content = document["paths"][path]["post"]["requestBody"]["content"]
            content[media]["schema"] = schema
        if known is not None:
            app.openapi_schema = document
        return document

    return openapi
