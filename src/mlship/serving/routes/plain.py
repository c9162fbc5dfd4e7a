"""The plain prediction API: POST /predict with the feature columns, one object or a list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlship.serving import openapi, protocols
from mlship.serving.errors import (
    MissingFieldsError,
    ModelRefusedError,
    OverRateError,
    RequestError,
    TooLargeError,
)
from mlship.serving.model import Scores
from mlship.serving.plane import DataPlane
from mlship.serving.routes import Json, Status, error_headers, status_of

PREDICTION_ROUTES = ("/predict",)
STATUS: Status = {
    RequestError: 422,
    MissingFieldsError: 422,
    ModelRefusedError: 422,
    TooLargeError: 413,
    OverRateError: 429,
}


def router(plane: DataPlane) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/predict",
        tags=["predict"],
        responses=openapi.responses(openapi.ERROR_DETAIL, 401, 408, 413, 422, 429, 503),
        openapi_extra=openapi.request_body({"application/json": openapi.predict_body(None)}),
    )
    async def predict(request: Request) -> Response:
        """One object or a list of objects whose fields are the model's feature columns.
        Answers label, confidence and class probabilities (classification) or prediction
        (regression), with the model and version; `warnings` names each category the
        training data never had (answered, where the contract flags rather than refuses)."""
        model = plane.model
        if model is None:
            return Json({"detail": "the model is not loaded yet"}, status_code=503)
        try:
            columns, single = protocols.predict_payload(
                model.features, protocols.parse_json(await request.body())
            )
            checked = protocols.check_columns(model.features, columns, "body", plane.max_rows)
            scored_by, scores = await plane.score(columns, checked.rows, checked.unknown)
        except RequestError as error:
            return Json(
                {"detail": error.message},
                status_code=status_of(error, STATUS),
                headers=error_headers(error),
            )
        answers = plain_answers(scored_by.classes, scores)
        meta = {"model": scored_by.name, "version": scored_by.version}
        if single:
            warnings = {"warnings": checked.warnings(0)} if checked.unknown else {}
            return Json({**answers[0], **meta, **warnings})
        warnings = {"warnings": checked.warnings()} if checked.unknown else {}
        return Json({"predictions": answers, **meta, **warnings})

    return routes


def plain_answers(classes: tuple[str, ...], scores: Scores) -> list[dict[str, Any]]:
    """Per row: `prediction` (regression); `label`, and `confidence` with `probabilities`
    when the classifier has them."""
    if scores.values is not None:
        return [{"prediction": round(float(v), 6)} for v in scores.values]
    assert scores.labels is not None
    if scores.probabilities is None:
        return [{"label": str(label)} for label in scores.labels]
    return [
        {
            "label": str(label),
            "confidence": round(float(row.max()), 6),
            "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)},
        }
        for label, row in zip(scores.labels, scores.probabilities, strict=True)
    ]
