"""One router per protocol, each a function of the data plane: probes and model information,
the plain prediction API, MLflow's scoring protocol, the Open Inference Protocol V2."""

from __future__ import annotations

import json
from typing import Any

from mlship.serving.protocols import BadRequestError


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequestError(f"invalid JSON: {error}") from error
