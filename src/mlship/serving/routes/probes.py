"""Liveness, readiness, the served model's description, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from mlship.serving import openapi
from mlship.serving.plane import DataPlane
from mlship.serving.routes import Json


def router(plane: DataPlane) -> APIRouter:
    routes = APIRouter()

    @routes.get("/health", tags=["probes"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @routes.get("/ready", tags=["probes"], responses=openapi.responses(openapi.ERROR_DETAIL, 503))
    async def ready() -> Response:
        """Readiness: the model is loaded and warmed."""
        status, body = plane.readiness()
        return Json(body, status_code=status)

    @routes.get(
        "/model", tags=["model"], responses=openapi.responses(openapi.ERROR_DETAIL, 401, 503)
    )
    async def model_info() -> Response:
        """Name, version, alias, git sha, run id, metrics, training time, reload state."""
        return Json(plane.describe(), status_code=200 if plane.model else 503)

    @routes.get("/metrics", tags=["probes"])
    async def prometheus() -> Response:
        body, content_type = plane.metrics.exposition()
        return Response(body, media_type=content_type)

    return routes
