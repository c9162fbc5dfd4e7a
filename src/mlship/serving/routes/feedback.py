"""POST /feedback: the true outcome of an answered request, by its X-Request-ID.

{"request_id": "...", "label": "great"} for a classifier, {"request_id": "...",
"value": 3.2} for a regressor; a request that scored several rows takes "labels" or
"values", one per row. The outcome feeds the live-quality gauges and the bandit.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlship.serving import monitor, openapi, protocols
from mlship.serving.errors import InvalidRequestError
from mlship.serving.feedback import (
    FeedbackMismatchError,
    FeedbackRepeatedError,
    UnknownRequestError,
)
from mlship.serving.plane import DataPlane
from mlship.serving.routes import Json

MAX_ID = 128
BODY: openapi.Schema = {
    "type": "object",
    "required": ["request_id"],
    "properties": {
        "request_id": {"type": "string", "maxLength": MAX_ID},
        "label": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
        "value": {"type": "number"},
        "values": {"type": "array", "items": {"type": "number"}},
    },
}
# a request with an answer already remembered may still be in another worker's buffer
RETRY_SECONDS = 0.5


def truths(
    payload: Any, classification: bool, classes: tuple[str, ...] = ()
) -> tuple[str, list[Any]]:
    """(request id, the true label or value per row), or InvalidRequestError naming the
    field; a label must be one of the model's `classes` (when it has them)."""
    if not isinstance(payload, dict):
        raise InvalidRequestError("expected a JSON object with request_id and label or value")
    request_id = payload.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID:
        raise InvalidRequestError(
            f"request_id: expected the X-Request-ID of an answer "
            f"(a string of 1 to {MAX_ID} characters)"
        )
    one, many = ("label", "labels") if classification else ("value", "values")
    wrong = [
        k for k in ("label", "labels", "value", "values") if k in payload and k not in (one, many)
    ]
    if wrong:
        task = "classifier" if classification else "regressor"
        raise InvalidRequestError(f"{wrong[0]}: this model is a {task}; send {one!r} or {many!r}")
    given = [k for k in (one, many) if k in payload]
    if len(given) != 1:
        raise InvalidRequestError(f"send exactly one of {one!r} (one row) or {many!r} (a list)")
    found = [payload[one]] if given[0] == one else payload[many]
    if not isinstance(found, list) or not found:
        raise InvalidRequestError(f"{many}: expected a non-empty list")
    for i, truth in enumerate(found):
        field = one if given[0] == one else f"{many}[{i}]"
        if isinstance(truth, bool):
            raise InvalidRequestError(
                f"{field}: expected a class label or a number, not true/false"
            )
        if classification and not isinstance(truth, str | int):
            raise InvalidRequestError(f"{field}: expected a class label")
        if not classification and not (isinstance(truth, int | float) and math.isfinite(truth)):
            raise InvalidRequestError(f"{field}: expected a finite number")
        if classes and str(truth) not in classes:
            shown = ", ".join(repr(c) for c in classes[:20])
            raise InvalidRequestError(f"{field}: not one of the model's classes ({shown})")
    return request_id, [str(t) if classification else float(t) for t in found]


def router(plane: DataPlane) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/feedback",
        tags=["model"],
        responses=openapi.responses(openapi.ERROR_DETAIL, 401, 404, 408, 409, 413, 422, 429, 503),
        openapi_extra=openapi.request_body({"application/json": BODY}),
    )
    async def feedback(request: Request) -> Response:
        """The true label (or value) of an answered request, named by its X-Request-ID;
        answers are remembered for MLSHIP_FEEDBACK_SECONDS, and take one feedback each."""
        model, store = plane.model, plane.monitor.store
        if model is None:
            return Json({"detail": "the model is not loaded yet"}, status_code=503)
        if store is None:
            return Json(
                {"detail": "feedback is off on this server (MLSHIP_FEEDBACK_SECONDS=0)"},
                status_code=404,
            )
        asker = monitor.client.get()  # only the client that asked may tell the outcome
        try:
            request_id, given = truths(
                protocols.parse_json(await request.body()), model.classification, model.classes
            )
        except InvalidRequestError as error:
            return Json({"detail": error.message}, status_code=422)
        try:
            try:
                outcome = await asyncio.to_thread(
                    store.record, request_id, given, model.classification, asker
                )
            except UnknownRequestError:
                await asyncio.sleep(RETRY_SECONDS)
                outcome = await asyncio.to_thread(
                    store.record, request_id, given, model.classification, asker
                )
        except UnknownRequestError as error:
            return Json({"detail": str(error)}, status_code=404)
        except FeedbackRepeatedError as error:
            return Json({"detail": str(error)}, status_code=409)
        except FeedbackMismatchError as error:
            return Json({"detail": str(error)}, status_code=422)
        except sqlite3.Error as error:  # a full or locked disk: a retry may succeed later
            return Json(
                {"detail": f"the feedback storage cannot take it now: {error}"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        plane.monitor.feedback_line(request_id, outcome.version, outcome.answers, given)
        if model.classification:
            correct = sum(str(a) == str(t) for a, t in zip(outcome.answers, given, strict=True))
            counted = plane.metrics.feedback_rows
            counted.labels(outcome.model, outcome.version, "correct").inc(correct)
            counted.labels(outcome.model, outcome.version, "wrong").inc(len(given) - correct)
        return Json(
            {
                "request_id": request_id,
                "model": outcome.model,
                "version": outcome.version,
                "rows": len(given),
                "answers": outcome.answers,  # what the feedback was scored against
            }
        )

    return routes
