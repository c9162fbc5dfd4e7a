"""The app factory. Nothing is loaded at import: the lifespan loads and warms the model,
then /ready turns true; a poller follows the registry alias and swaps models atomically.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from mlship import __version__
from mlship.config import Settings
from mlship.serving import protocols
from mlship.serving.batching import MicroBatcher
from mlship.serving.metrics import Metrics
from mlship.serving.model import MODELS_SCHEME, ServedModel, load_directory, load_registry
from mlship.serving.protocols import BadRequestError, Columns

log = logging.getLogger("mlship.serve")
access_log = logging.getLogger("mlship.access")

OPEN_PATHS = {"/health", "/ready", "/metrics", "/v2", "/v2/health/live", "/v2/health/ready",
              "/docs", "/openapi.json"}  # fmt: skip
V2_MODEL_ROUTE = re.compile(r"^/v2/models/[^/]+(/ready|/infer)?$")


@dataclass(frozen=True)
class Challenger:
    source: str
    mode: Literal["shadow", "split"]
    weight: float = 0.1  # share of traffic in split mode


@dataclass
class Slot:
    """One served model (champion or challenger) with its batcher and reload state."""

    role: str
    source: str
    model: ServedModel | None = None
    batcher: MicroBatcher | None = None
    reload_error: dict[str, Any] | None = None
    last_checked: float | None = field(default=None)

    def score(self, columns: Columns) -> tuple[ServedModel, np.ndarray]:
        model = self.model  # one reference per batch: a swap never splits a batch
        assert model is not None
        return model, model.predict_proba(columns)


def load_model(source: str, settings: Settings) -> ServedModel:
    if source.startswith(MODELS_SCHEME):
        return load_registry(settings.tracking_uri, source)
    from pathlib import Path

    return load_directory(Path(source), settings.model_name)


def _route_label(path: str) -> str:
    if path in OPEN_PATHS or path in ("/predict", "/invocations", "/model"):
        return path
    if V2_MODEL_ROUTE.match(path):
        suffix = path.rsplit("/", 1)[-1]
        return (
            f"/v2/models/{{name}}/{suffix}" if suffix in ("ready", "infer") else "/v2/models/{name}"
        )
    return "other"


class Gatekeeper:
    """Pure ASGI middleware: request id, JSON access log, bearer auth, body size limit and
    request metrics, in one pass (Starlette's BaseHTTPMiddleware would cost more per call)."""

    def __init__(self, app: Any, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.token = settings.api_token.get_secret_value().encode() if settings.api_token else None
        self.max_body = settings.max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        path, method = scope["path"], scope["method"]
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode("latin-1"))]  # fmt: skip
            await send(message)

        self.metrics.in_flight.inc()
        try:
            refusal = self._refuse(path, headers)
            if refusal is not None:
                await self._reply(send_with_id, *refusal)
            else:
                await self.app(scope, self._limited(receive, send_with_id), send_with_id)
        except _BodyTooLargeError:
            await self._reply(send_with_id, 413, {"detail": self._too_large_text()})
        finally:
            self.metrics.in_flight.dec()
            route = _route_label(path)
            self.metrics.requests.labels(route, method, str(status)).inc()
            access_log.info(
                json.dumps(
                    {
                        "request_id": request_id, "method": method, "path": path,
                        "status": status, "ms": round((time.perf_counter() - started) * 1e3, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    }
                )
            )  # fmt: skip

    def _too_large_text(self) -> str:
        return f"request body exceeds the limit of {self.max_body} bytes"

    def _refuse(self, path: str, headers: dict[bytes, bytes]) -> tuple[int, Any, list[Any]] | None:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, {"detail": self._too_large_text()}, []
        if self.token is None or path in OPEN_PATHS or path.startswith("/v2/health"):
            return None
        given = headers.get(b"authorization", b"")
        if given[:7].lower() == b"bearer " and hmac.compare_digest(given[7:].strip(), self.token):
            return None
        return (
            401,
            {"detail": "missing or invalid bearer token"},
            [(b"www-authenticate", b"Bearer")],
        )

    def _limited(self, receive: Any, send: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
        """Count body bytes as they arrive: a chunked upload cannot pass the limit either."""
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLargeError
            return message

        return limited_receive

    @staticmethod
    async def _reply(send: Any, status: int, body: Any, extra: list[Any] | None = None) -> None:
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *(extra or [])],
            }
        )  # fmt: skip
        await send({"type": "http.response.body", "body": payload})


class _BodyTooLargeError(Exception):
    pass


def create_app(source: str, settings: Settings, challenger: Challenger | None = None) -> FastAPI:
    """The server for the model at `source` (a model directory or a models:/ URI)."""
    metrics = Metrics()
    champion = Slot("champion", source)
    slots = [champion] + ([Slot("challenger", challenger.source)] if challenger else [])
    background: set[asyncio.Task[Any]] = set()

    def show(model: ServedModel, serving: bool = True) -> None:
        git = str(model.card.get("git", {}).get("sha", "unknown"))
        info = metrics.model_info.labels(model.name, model.version, model.alias or "", git)
        info.set(1 if serving else 0)

    async def load_slot(slot: Slot) -> None:
        model = await asyncio.to_thread(load_model, slot.source, settings)
        await asyncio.to_thread(model.warm)
        slot.model = model
        slot.batcher = MicroBatcher(
            slot.score, settings.batch_max_rows, settings.batch_wait_ms / 1e3,
            on_batch=metrics.batch_rows.observe,
        )  # fmt: skip
        slot.batcher.start()
        show(model)
        log.info("serving %s %s v%s from %s", slot.role, model.name, model.version, slot.source)

    async def follow(slot: Slot) -> None:
        """Poll the registry alias; load, warm and swap in a new version. On failure the
        old model keeps serving and the failure shows in /model and the metrics."""
        from mlship.serving.model import resolve_version

        while True:
            await asyncio.sleep(settings.reload_seconds)
            current = slot.model
            if current is None:
                continue
            try:
                version = await asyncio.to_thread(
                    resolve_version, settings.tracking_uri, slot.source
                )
                slot.last_checked = time.time()
                if version == current.version:
                    continue
                fresh = await asyncio.to_thread(load_model, slot.source, settings)
                await asyncio.to_thread(fresh.warm)
            except Exception as error:  # keep serving whatever went wrong with the new one
                slot.reload_error = {"error": str(error), "at": time.time()}
                metrics.reload_failures.labels(current.name, current.version).inc()
                log.warning("reload of %s failed; still serving v%s: %s",
                            slot.source, current.version, error)  # fmt: skip
                continue
            show(current, serving=False)
            slot.model = fresh  # atomic: the next batch uses the new model
            slot.reload_error = None
            show(fresh)
            log.info("swapped %s to v%s", slot.source, fresh.version)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(_start())
        try:
            yield
        finally:
            loading.cancel()
            for task in background:
                task.cancel()
            for slot in slots:
                if slot.batcher is not None:
                    await slot.batcher.stop()

    async def _start() -> None:
        for slot in slots:
            try:
                await load_slot(slot)
            except Exception as error:
                slot.reload_error = {"error": str(error), "at": time.time()}
                log.error("cannot load %s: %s", slot.source, error)
                continue
            if slot.source.startswith(MODELS_SCHEME) and "@" in slot.source:
                task = asyncio.create_task(follow(slot))
                background.add(task)

    app = FastAPI(
        title="mlship model server", version=__version__, lifespan=lifespan,
        description="Plain prediction API, the MLflow scoring protocol and the Open "
        "Inference Protocol V2 for one scikit-learn model.",
    )  # fmt: skip

    def ready() -> ServedModel | None:
        return champion.model if champion.batcher is not None else None

    async def score(columns: Columns, rows: int) -> tuple[ServedModel, np.ndarray]:
        slot = champion
        if (
            challenger is not None
            and challenger.mode == "split"
            and slots[1].batcher is not None
            and random.random() < challenger.weight
        ):
            slot = slots[1]
        if rows > settings.max_request_rows:
            raise BadRequestError(
                f"{rows} rows exceed the limit of {settings.max_request_rows} per request", 413
            )
        model, probabilities = await _score_slot(slot, columns, rows)
        if challenger and challenger.mode == "shadow" and slots[1].batcher is not None:
            task = asyncio.create_task(_score_slot(slots[1], columns, rows))
            background.add(task)
            task.add_done_callback(background.discard)
        return model, probabilities

    async def _score_slot(
        slot: Slot, columns: Columns, rows: int
    ) -> tuple[ServedModel, np.ndarray]:
        assert slot.batcher is not None and slot.model is not None
        started = time.perf_counter()
        name, version = slot.model.name, slot.model.version
        try:
            model, probabilities = await slot.batcher.submit(columns, rows)
        except Exception:
            metrics.predictions.labels(name, version, "error").inc()
            raise
        metrics.latency.labels(model.name, model.version).observe(time.perf_counter() - started)
        metrics.predictions.labels(model.name, model.version, "ok").inc()
        metrics.rows.labels(model.name, model.version).inc(rows)
        labels = np.asarray(model.classes)[probabilities.argmax(axis=1)]
        for label, count in zip(*np.unique(labels, return_counts=True), strict=True):
            metrics.classes.labels(model.name, model.version, str(label)).inc(int(count))
        return model, probabilities

    async def parsed_json(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadRequestError(f"invalid JSON: {error}") from error

    # --- probes and model information ------------------------------------------------------

    @app.get("/health", tags=["probes"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["probes"])
    async def is_ready() -> Response:
        """Readiness: the model is loaded and warmed."""
        model = ready()
        if model is None and champion.reload_error is not None:
            return JSONResponse(
                {"status": "failed", "error": champion.reload_error["error"]}, status_code=503
            )
        if model is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "model": model.name, "version": model.version})

    @app.get("/model", tags=["model"])
    async def model_info() -> Response:
        """Name, version, alias, git sha, run id, metrics, training time, reload state."""
        described = []
        for slot in slots:
            entry = slot.model.info() if slot.model else {"source": slot.source, "loaded": False}
            entry |= {"role": slot.role, "reload_error": slot.reload_error,
                      "last_checked": slot.last_checked}  # fmt: skip
            described.append(entry)
        body = {**described[0], "models": described}
        if challenger:
            body["challenger_mode"] = challenger.mode
        return JSONResponse(body, status_code=200 if ready() else 503)

    @app.get("/metrics", tags=["probes"])
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # --- plain prediction API ------------------------------------------------------------

    def _unavailable() -> JSONResponse:
        return JSONResponse({"detail": "the model is not loaded yet"}, status_code=503)

    @app.post("/predict", tags=["predict"])
    async def predict(request: Request) -> Response:
        """One object or a list of objects whose fields are the model's feature columns.
        Answers label, confidence and class probabilities, with the model version."""
        model = ready()
        if model is None:
            return _unavailable()
        try:
            columns, single = protocols.predict_payload(model.features, await parsed_json(request))
            rows = protocols.check_columns(model.features, columns, "body")
            scored_by, probabilities = await score(columns, rows)
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

    # --- MLflow scoring protocol ---------------------------------------------------------

    def _mlflow_error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error_code": "BAD_REQUEST", "message": message}, status_code=status)

    @app.post("/invocations", tags=["mlflow"])
    async def invocations(request: Request) -> Response:
        """MLflow's scoring protocol: JSON with one of dataframe_split, dataframe_records,
        instances or inputs (+ optional params), or text/csv."""
        model = ready()
        if model is None:
            return _mlflow_error("the model is not loaded yet", 503)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/json":
                columns = protocols.mlflow_json(model.features, await parsed_json(request))
            elif content_type == "text/csv":
                text = (await request.body()).decode("utf-8", errors="replace")
                columns = protocols.csv_numbers(model.features, protocols.mlflow_csv(text))
            else:
                return _mlflow_error(
                    f"content type {content_type or '(none)'!r} is not supported; "
                    "use application/json or text/csv", 415,
                )  # fmt: skip
            rows = protocols.check_columns(model.features, columns, "input")
            scored_by, probabilities = await score(columns, rows)
        except BadRequestError as error:
            return _mlflow_error(error.message, error.status)
        labels = np.asarray(scored_by.classes)[probabilities.argmax(axis=1)]
        return JSONResponse({"predictions": labels.tolist()})

    # --- Open Inference Protocol V2 ----------------------------------------------------------

    def _v2_error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def _v2_model(name: str) -> ServedModel | JSONResponse:
        model = ready()
        if model is None:
            return _v2_error("the model is not loaded yet", 503)
        if name != model.name:
            return _v2_error(f"unknown model {name!r}; this server serves {model.name!r}", 404)
        return model

    @app.get("/v2", tags=["v2"])
    async def v2_server() -> dict[str, Any]:
        return {"name": "mlship", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", tags=["v2"])
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["v2"])
    async def v2_ready() -> Response:
        return JSONResponse({"ready": ready() is not None}, status_code=200 if ready() else 503)

    @app.get("/v2/models/{name}", tags=["v2"])
    async def v2_metadata(name: str) -> Response:
        found = _v2_model(name)
        if isinstance(found, JSONResponse):
            return found
        f = found.features
        inputs = [{"name": c, "datatype": "BYTES", "shape": [-1]} for c in f.text + f.categorical]
        inputs += [{"name": c, "datatype": "FP64", "shape": [-1]} for c in f.numeric]
        return JSONResponse(
            {
                "name": found.name, "versions": [found.version], "platform": "scikit-learn",
                "inputs": inputs,
                "outputs": [
                    {"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP64",
                     "shape": [-1, len(found.classes)]},
                ],
                "parameters": {"classes": list(found.classes)},
            }
        )  # fmt: skip

    @app.get("/v2/models/{name}/ready", tags=["v2"])
    async def v2_model_ready(name: str) -> Response:
        found = _v2_model(name)
        if isinstance(found, JSONResponse):
            return found
        return JSONResponse({"name": name, "ready": True})

    @app.post("/v2/models/{name}/infer", tags=["v2"])
    async def v2_infer(name: str, request: Request) -> Response:
        """Inputs named after the feature columns (text as BYTES); `id` is echoed. JSON or
        the binary tensor extension (Inference-Header-Content-Length)."""
        found = _v2_model(name)
        if isinstance(found, JSONResponse):
            return found
        try:
            payload, binary = protocols.split_v2_body(
                await request.body(), request.headers.get("inference-header-content-length")
            )
            columns = protocols.v2_columns(found.features, payload, binary)
            rows = protocols.check_columns(found.features, columns, "inputs")
            scored_by, probabilities = await score(columns, rows)
        except BadRequestError as error:
            return _v2_error(error.message, error.status)
        labels = np.asarray(scored_by.classes)[probabilities.argmax(axis=1)].tolist()
        outputs = [
            {"name": "label", "datatype": "BYTES", "shape": [rows], "data": labels},
            {"name": "probabilities", "datatype": "FP64", "shape": [rows, len(scored_by.classes)],
             "data": probabilities.round(6).ravel().tolist()},
        ]  # fmt: skip
        wanted = [o.get("name") for o in payload.get("outputs", []) if isinstance(o, dict)]
        if wanted:
            outputs = [o for o in outputs if o["name"] in wanted]
        answer: dict[str, Any] = {"model_name": scored_by.name, "model_version": scored_by.version,
                                  "outputs": outputs}  # fmt: skip
        if "id" in payload:
            answer["id"] = payload["id"]
        return JSONResponse(answer)

    app.add_middleware(Gatekeeper, settings=settings, metrics=metrics)
    app.state.slots = slots
    return app
