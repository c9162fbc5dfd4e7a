"""A small trained model directory and an app around it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlship.card import ModelCard
from mlship.config.settings import Settings
from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from mlship.serving.app import create_app
from tests.conftest import make_params, text_frame


def card_for(classes: list[str]) -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "mlship-model",
            "features": {"text": ["review"]},
            "target": "score",
            "classes": classes,
            "git": {"sha": "abc123"},
            "mlflow": {"run_id": "run-1"},
            "trained_at": "2026-01-01T00:00:00+00:00",
        }
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    pipeline = fit(make_params(), text_frame(20))
    save_model(pipeline, card_for(["great", "other"]), folder)
    return folder


def wait_ready(client: TestClient, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the model never became ready"
        time.sleep(0.05)


def make_client(model_dir: Path, **settings: object) -> Iterator[TestClient]:
    app = create_app(str(model_dir), Settings(**settings))  # type: ignore[arg-type]
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@pytest.fixture
def client(model_dir: Path) -> Iterator[TestClient]:
    yield from make_client(model_dir, max_request_rows=50, max_body_bytes=20_000)
