"""One router per protocol, each a function of the data plane: probes and model information,
the plain prediction API, MLflow's scoring protocol, the Open Inference Protocol V2."""

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class Json(JSONResponse):
    """JSON rendered by orjson: NumPy arrays go out as they are, without .tolist()."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
