"""A schema-driven fuzz run against a real server: every operation in the server's own
OpenAPI document gets generated requests, valid and invalid; none may answer 5xx."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from mlship.config.settings import Settings
from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from mlship.serving.app import create_app
from tests.conftest import make_params, text_frame
from tests.serving.conftest import card_for, wait_ready
from tests.serving.live import running_server

pytestmark = pytest.mark.integration
# made at collection (the schema is read from a served model), removed when pytest exits
MODEL = Path(tempfile.mkdtemp(prefix="mlship-fuzz-"))
atexit.register(shutil.rmtree, MODEL, ignore_errors=True)
RESPONSES: list[int] = []


def _document() -> dict[str, Any]:
    """The OpenAPI document the server publishes once the model is loaded."""
    save_model(fit(make_params(), text_frame(20)), card_for(["great", "other"]), MODEL)
    with TestClient(create_app(str(MODEL), Settings())) as client:
        wait_ready(client)
        document: dict[str, Any] = client.get("/openapi.json").json()
    return document


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server("--model", str(MODEL), "--workers", "2") as url:
        yield url
    server_errors = [code for code in RESPONSES if code >= 500]
    print(f"\nfuzzed {len(RESPONSES)} requests, {len(server_errors)} answered 5xx")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: Any, server: str) -> None:
    response = case.call(base_url=server, timeout=30)
    RESPONSES.append(response.status_code)
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
