"""The Open Inference Protocol V2 (KServe, Triton): server and model metadata, readiness,
and inference with JSON or the binary tensor extension."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlship import __version__
from mlship.serving import openapi, protocols
from mlship.serving.errors import OverRateError, RequestError, TooLargeError
from mlship.serving.model import Scores, ServedModel
from mlship.serving.plane import DataPlane
from mlship.serving.routes import Json, Status, error_headers, status_of

PREDICTION_ROUTES = ("/v2/models/{name}/infer",)
STATUS: Status = {
    RequestError: 400,
    TooLargeError: 413,
    OverRateError: 429,
}  # a missing input too: V2's errors are 400s


def _error(message: str, status: int = 400, headers: dict[str, str] | None = None) -> Json:
    return Json({"error": message}, status_code=status, headers=headers)


def router(plane: DataPlane) -> APIRouter:
    routes = APIRouter(tags=["v2"])

    def named(name: str) -> ServedModel | Json:
        model = plane.model
        if model is None:
            return _error("the model is not loaded yet", 503)
        if name != model.name:
            return _error(f"unknown model {name!r}; this server serves {model.name!r}", 404)
        return model

    @routes.get("/v2")
    async def server() -> dict[str, Any]:
        return {"name": "mlship", "version": __version__, "extensions": ["binary_tensor_data"]}

    @routes.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @routes.get("/v2/health/ready", responses=openapi.responses(openapi.ERROR_V2, 503))
    async def ready() -> Response:
        is_ready = plane.model is not None
        return Json({"ready": is_ready}, status_code=200 if is_ready else 503)

    @routes.get("/v2/models/{name}", responses=openapi.responses(openapi.ERROR_V2, 401, 404, 503))
    async def metadata(name: str) -> Response:
        found = named(name)
        if isinstance(found, Json):
            return found
        f = found.features
        inputs = [{"name": c, "datatype": "BYTES", "shape": [-1]} for c in f.text + f.categorical]
        inputs += [{"name": c, "datatype": "FP64", "shape": [-1]} for c in f.numeric]
        if not found.classification:
            outputs = [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
        else:
            outputs = [{"name": "label", "datatype": "BYTES", "shape": [-1]}]
            if found.has_probabilities:
                outputs.append(
                    {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(found.classes)]}
                )
        return Json(
            {
                "name": found.name,
                "versions": [found.version],
                "platform": "scikit-learn",
                "inputs": inputs,
                "outputs": outputs,
                "parameters": {"task": found.card.task, "classes": list(found.classes)},
            }
        )

    @routes.get(
        "/v2/models/{name}/ready", responses=openapi.responses(openapi.ERROR_V2, 401, 404, 503)
    )
    async def model_ready(name: str) -> Response:
        found = named(name)
        if isinstance(found, Json):
            return found
        return Json({"name": name, "ready": True})

    @routes.post(
        "/v2/models/{name}/infer",
        responses=openapi.responses(openapi.ERROR_V2, 400, 401, 404, 408, 413, 429, 503),
        openapi_extra=openapi.request_body({"application/json": openapi.v2_body(None)}),
    )
    async def infer(name: str, request: Request) -> Response:
        """Inputs named after the feature columns (text as BYTES); `id` is echoed. JSON or
        the binary tensor extension (Inference-Header-Content-Length)."""
        found = named(name)
        if isinstance(found, Json):
            return found
        try:
            payload, binary = protocols.split_v2_body(
                await request.body(), request.headers.get("inference-header-content-length")
            )
            request_id, wanted = protocols.v2_request(payload)
            columns = protocols.v2_columns(found.features, payload, binary)
            checked = protocols.check_columns(found.features, columns, "inputs", plane.max_rows)
            rows = checked.rows
            scored_by, scores = await plane.score(columns, rows, checked.unknown)
        except RequestError as error:
            return _error(error.message, status_of(error, STATUS), error_headers(error))
        outputs = v2_outputs(scored_by.classes, scores, rows)
        if wanted:
            known = [o["name"] for o in outputs]
            unknown = [name for name in wanted if name not in known]
            if unknown:
                return _error(f"outputs: unknown output(s) {unknown[:5]}; this model has {known}")
            outputs = [o for o in outputs if o["name"] in wanted]
        answer: dict[str, Any] = {
            "model_name": scored_by.name,
            "model_version": scored_by.version,
            "outputs": outputs,
        }
        if request_id is not None:
            answer["id"] = request_id
        if checked.unknown:  # the protocol's place for what else a server has to say
            answer["parameters"] = {"warnings": checked.warnings()}
        return Json(answer)

    return routes


def v2_outputs(classes: tuple[str, ...], scores: Scores, rows: int) -> list[dict[str, Any]]:
    if scores.values is not None:
        return [
            {
                "name": "prediction",
                "datatype": "FP64",
                "shape": [rows],
                "data": scores.values.round(6),
            }
        ]
    assert scores.labels is not None
    outputs = [
        {"name": "label", "datatype": "BYTES", "shape": [rows], "data": scores.labels.tolist()}
    ]
    if scores.probabilities is not None:
        outputs.append(
            {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [rows, len(classes)],
                "data": scores.probabilities.round(6).ravel(),
            }
        )
    return outputs
