"""One router per protocol, each a function of the data plane: probes and model information,
the plain prediction API, MLflow's scoring protocol, the Open Inference Protocol V2, and
feedback. Each protocol module declares `PREDICTION_ROUTES` (the paths the middleware
scores directly) and `STATUS` (its status code for each kind of request error)."""

from typing import Any

import orjson
from fastapi.responses import JSONResponse

from mlship.serving.errors import OverRateError, RequestError
from mlship.serving.limits import retry_after_header

Status = dict[type[RequestError], int]


class Json(JSONResponse):
    """JSON rendered by orjson: NumPy arrays go out as they are, without .tolist()."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def status_of(error: RequestError, status: Status) -> int:
    """The protocol's status for this error: its own kind's, or the nearest parent's."""
    for kind in type(error).__mro__:
        if kind in status:
            return status[kind]
    return 400


def error_headers(error: RequestError) -> dict[str, str] | None:
    """Headers an error's answer carries: Retry-After for a client over its rate."""
    if isinstance(error, OverRateError):
        return {"retry-after": retry_after_header(error.retry_after).decode()}
    return None
