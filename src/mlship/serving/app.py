"""The app factory. Nothing is loaded at import: the lifespan starts the data plane, which
serves the models the runner preloaded and loads any other in the background (/ready turns
true when the champion can score)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute

from mlship import __version__
from mlship.config.settings import Settings
from mlship.serving import openapi
from mlship.serving.metrics import Metrics
from mlship.serving.middleware import Gatekeeper, Shortcut
from mlship.serving.model import ServedModel
from mlship.serving.options import Challenger, Siblings
from mlship.serving.plane import DataPlane, load_model
from mlship.serving.routes import feedback, mlflow_scoring, page, plain, probes, v2

# every protocol, in the order their routes are tried; a new protocol is one module here
PROTOCOLS = (probes, page, plain, mlflow_scoring, v2, feedback)


def create_app(
    source: str,
    settings: Settings,
    challenger: Challenger | None = None,
    siblings: Siblings | None = None,
    metrics_file: Path | None = None,
    preloaded: Mapping[str, ServedModel] | None = None,
) -> FastAPI:
    """The server for the model at `source` (a model directory or a models:/ URI);
    `preloaded` holds models the runner loaded and warmed before forking, by source."""
    metrics = Metrics()
    loader = partial(load_model, metrics_file=metrics_file)
    plane = DataPlane(
        source, settings, metrics, challenger, loader, siblings=siblings, preloaded=preloaded
    )
    return assemble(plane, settings)


def assemble(plane: DataPlane, settings: Settings) -> FastAPI:
    """The app around a data plane: one router per protocol, behind the middleware."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        plane.start()
        try:
            yield
        finally:
            await plane.stop()

    app = FastAPI(
        title="mlship model server",
        version=__version__,
        lifespan=lifespan,
        description="Plain prediction API, the MLflow scoring protocol and the Open "
        "Inference Protocol V2 for one scikit-learn model.",
    )
    shortcuts = []
    for module in PROTOCOLS:
        router = module.router(plane)
        app.include_router(router)
        # a protocol's prediction routes are scored by the middleware directly (it declares
        # them beside its routes: one that is not found there is an error, not a slow path)
        predicting = getattr(module, "PREDICTION_ROUTES", ())
        found = [r for r in router.routes if isinstance(r, APIRoute) and r.path in predicting]
        missing = set(predicting) - {route.path for route in found}
        if missing:
            raise RuntimeError(f"{module.__name__}: no route for {sorted(missing)}")
        shortcuts += [
            Shortcut(method, route.path_regex, route.endpoint)
            for route in found
            for method in route.methods or ()
        ]
    document = openapi.describe(
        app, lambda: (plane.model.features, plane.model.card.example) if plane.model else None
    )
    app.openapi = document  # type: ignore[method-assign]  # FastAPI's documented override
    app.add_middleware(Gatekeeper, settings=settings, metrics=plane.metrics, shortcuts=shortcuts)
    return app
