"""MLflow's scoring protocol: POST /invocations, JSON (one of dataframe_split,
dataframe_records, instances, inputs) or text/csv."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlship.serving import openapi, protocols
from mlship.serving.errors import (
    MissingFieldsError,
    OverRateError,
    RequestError,
    TooLargeError,
)
from mlship.serving.plane import DataPlane
from mlship.serving.routes import Json, Status, error_headers, status_of

PREDICTION_ROUTES = ("/invocations",)
STATUS: Status = {
    RequestError: 400,
    MissingFieldsError: 422,
    TooLargeError: 413,
    OverRateError: 429,
}


def _error(message: str, status: int = 400, headers: dict[str, str] | None = None) -> Json:
    body = {"error_code": "BAD_REQUEST", "message": message}
    return Json(body, status_code=status, headers=headers)


def router(plane: DataPlane) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/invocations",
        tags=["mlflow"],
        responses=openapi.responses(openapi.ERROR_MLFLOW, 400, 401, 408, 413, 415, 422, 429, 503),
        openapi_extra=openapi.request_body(
            {"application/json": openapi.mlflow_body(None), "text/csv": {"type": "string"}}
        ),
    )
    async def invocations(request: Request) -> Response:
        """MLflow's scoring protocol: JSON with one of dataframe_split, dataframe_records,
        instances or inputs (+ optional params), or text/csv."""
        model = plane.model
        if model is None:
            return _error("the model is not loaded yet", 503)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/json":
                columns = protocols.mlflow_json(
                    model.features, protocols.parse_json(await request.body())
                )
            elif content_type == "text/csv":
                table = protocols.mlflow_csv(await request.body())
                columns = protocols.csv_numbers(model.features, table)
            else:
                return _error(
                    f"content type {content_type or '(none)'!r} is not supported; "
                    "use application/json or text/csv",
                    415,
                )
            checked = protocols.check_columns(model.features, columns, "input", plane.max_rows)
            _, scores = await plane.score(columns, checked.rows, checked.unknown)
        except RequestError as error:
            return _error(error.message, status_of(error, STATUS), error_headers(error))
        answers = scores.values if scores.values is not None else scores.labels
        assert answers is not None
        body = {"predictions": answers if scores.values is not None else answers.tolist()}
        return Json(body | ({"warnings": checked.warnings()} if checked.unknown else {}))

    return routes
