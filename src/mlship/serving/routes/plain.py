"""The plain prediction API: POST /predict with the feature columns, one object or a list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mlship.serving import protocols
from mlship.serving.plane import DataPlane
from mlship.serving.protocols import BadRequestError
from mlship.serving.routes import parse_json


def router(plane: DataPlane) -> APIRouter:
    routes = APIRouter()

    @routes.post("/predict", tags=["predict"])
    async def predict(request: Request) -> Response:
        """One object or a list of objects whose fields are the model's feature columns.
        Answers label, confidence and class probabilities, with the model version."""
        model = plane.model
        if model is None:
            return JSONResponse({"detail": "the model is not loaded yet"}, status_code=503)
        try:
            columns, single = protocols.predict_payload(
                model.features, parse_json(await request.body())
            )
            rows = protocols.check_columns(model.features, columns, "body", plane.max_rows)
            scored_by, probabilities = await plane.score(columns, rows)
        except BadRequestError as error:
            status = 422 if error.status == 400 else error.status
            return JSONResponse({"detail": error.message}, status_code=status)
        classes = scored_by.classes
        answers = [
            {
                "label": classes[int(row.argmax())],
                "confidence": round(float(row.max()), 6),
                "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)},
            }
            for row in probabilities
        ]
        meta = {"model": scored_by.name, "version": scored_by.version}
        return JSONResponse({**answers[0], **meta} if single else {"predictions": answers, **meta})

    return routes
