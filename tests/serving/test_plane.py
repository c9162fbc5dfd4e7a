"""The data plane through its public interface, with an in-memory loader: readiness while
loading and after, what /model describes, and challenger routing in split and shadow mode."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlship.choices import ChallengerMode
from mlship.config.settings import Settings
from mlship.serving.errors import ModelRefusedError
from mlship.serving.metrics import Metrics
from mlship.serving.model import ServedModel, load_directory
from mlship.serving.options import Challenger, Siblings
from mlship.serving.plane import DataPlane


def _loader(model_dir: Path) -> object:
    def load(source: str, settings: Settings) -> ServedModel:
        if source == "broken":
            raise ValueError("no such model")
        served = load_directory(model_dir, settings.model_name)
        return ServedModel(served.model, served.card, served.name, source, None, source)

    return load


async def _started(plane: DataPlane) -> None:
    plane.start()
    for _ in range(200):
        if plane.model is not None or plane.champion.reload_error:
            return
        await asyncio.sleep(0.02)


def test_readiness_and_description(model_dir: Path) -> None:
    async def scenario() -> None:
        plane = DataPlane("1", Settings(), Metrics(), loader=_loader(model_dir))
        assert plane.readiness() == (503, {"status": "loading"})
        await _started(plane)
        status, body = plane.readiness()
        assert status == 200 and body["version"] == "1"
        assert plane.describe()["models"][0]["role"] == "champion"
        await plane.stop()

    asyncio.run(scenario())


def test_with_several_processes_ready_waits_for_every_one(model_dir: Path, tmp_path: Path) -> None:
    """The kernel spreads connections over the processes: /ready must not say yes while a
    sibling would still answer 503."""

    async def scenario() -> None:
        siblings = Siblings(tmp_path, count=2)
        plane = DataPlane("1", Settings(), Metrics(), loader=_loader(model_dir), siblings=siblings)
        await _started(plane)
        assert plane.readiness() == (
            503,
            {"status": "loading", "processes_ready": 1, "processes": 2},
        )
        (tmp_path / "12345").touch()  # the other process has loaded its model
        assert plane.readiness()[0] == 200
        await plane.stop()

    asyncio.run(scenario())


def test_a_champion_that_cannot_load_is_not_ready(model_dir: Path) -> None:
    async def scenario() -> None:
        plane = DataPlane("broken", Settings(), Metrics(), loader=_loader(model_dir))
        await _started(plane)
        status, body = plane.readiness()
        assert status == 503 and body == {"status": "failed", "error": "no such model"}
        await plane.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("mode", "answers"), [(ChallengerMode.split, "2"), (ChallengerMode.shadow, "1")]
)
def test_challenger_routing(model_dir: Path, mode: ChallengerMode, answers: str) -> None:
    async def scenario() -> None:
        plane = DataPlane(
            "1", Settings(), Metrics(), Challenger("2", mode, weight=1.0), loader=_loader(model_dir)
        )
        await _started(plane)
        for _ in range(200):
            if plane.challenger is not None and plane.challenger.ready:
                break
            await asyncio.sleep(0.02)
        model, scores = await plane.score({"review": ["great taste"]}, 1)
        assert model.version == answers and scores.probabilities is not None
        assert scores.probabilities.shape == (1, 2)
        assert plane.describe()["challenger_mode"] == mode.value
        await plane.stop()

    asyncio.run(scenario())


class _Picky:
    """A model that cannot score one particular text: it raises, as models do."""

    classes_ = np.array(["great", "other"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if (frame["review"] == "poison").any():
            raise ValueError("cannot score 'poison'")
        return np.tile([0.7, 0.3], (len(frame), 1))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.classes_[self.predict_proba(frame).argmax(axis=1)]


def test_one_poisoned_request_fails_alone_in_a_burst(model_dir: Path) -> None:
    card = load_directory(model_dir, "m").card

    def load(source: str, settings: Settings) -> ServedModel:
        return ServedModel(_Picky(), card, "m", "1", None, source)

    async def scenario() -> list[object]:
        plane = DataPlane("1", Settings(), Metrics(), loader=load)
        await _started(plane)
        texts = ["fine"] * 20 + ["poison"] + ["fine"] * 20
        # all 41 arrive together, so the batcher merges them into one model call
        answers = await asyncio.gather(
            *(plane.score({"review": [text]}, 1) for text in texts), return_exceptions=True
        )
        await plane.stop()
        return answers

    answers = asyncio.run(scenario())
    failed = [a for a in answers if isinstance(a, Exception)]
    assert len(failed) == 1 and isinstance(failed[0], ModelRefusedError)
    assert "cannot score this input: cannot score 'poison'" in failed[0].message
    assert all(a[1].labels.tolist() == ["great"] for a in answers if not isinstance(a, Exception))


def test_large_requests_are_scored_in_chunks_beside_small_ones(model_dir: Path) -> None:
    async def scenario() -> None:
        plane = DataPlane("1", Settings(batch_chunk_rows=8), Metrics(), loader=_loader(model_dir))
        await _started(plane)
        big = {"review": [f"great taste {i}" for i in range(50)]}
        large, small = await asyncio.gather(
            plane.score(big, 50), plane.score({"review": ["stale"]}, 1)
        )
        assert large[1].labels is not None and len(large[1].labels) == 50
        assert small[1].labels is not None and len(small[1].labels) == 1
        await plane.stop()

    asyncio.run(scenario())
