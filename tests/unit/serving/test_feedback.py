"""Feedback: answers remembered by request id, bounded in time and count; live quality on a
scripted sequence of outcomes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mlship.serving.feedback import (
    FeedbackMismatchError,
    FeedbackRepeatedError,
    FeedbackStore,
    UnknownRequestError,
)


def _store(tmp_path: Path, **options: Any) -> FeedbackStore:
    settings = {"keep_seconds": 60.0, "max_answers": 1000, "window": 100, **options}
    return FeedbackStore(str(tmp_path / "feedback.sqlite"), **settings)  # type: ignore[arg-type]


def test_live_accuracy_on_a_scripted_sequence(tmp_path: Path) -> None:
    store = _store(tmp_path)
    truths = ["great", "other", "great", "great", "other"] * 4  # 20 answers, all "great"
    for i in range(20):
        store.remember(f"r{i}", "reviews", "3", ["great"])
    for i, truth in enumerate(truths):
        store.record(f"r{i}", [truth], classification=True)
    quality = store.quality("reviews")["3"]
    assert (quality.rows, quality.successes, quality.accuracy) == (20, 12, 0.6)


def test_the_window_keeps_the_latest_feedback(tmp_path: Path) -> None:
    store = _store(tmp_path, window=5)
    for i in range(10):
        store.remember(f"r{i}", "m", "1", ["a"])
    for i in range(10):  # the first five wrong, the last five right
        store.record(f"r{i}", ["b" if i < 5 else "a"], classification=True)
        time.sleep(0.002)
    assert store.quality("m")["1"].accuracy == 1.0


def test_a_request_takes_one_feedback_and_its_first_answer_stays(tmp_path: Path) -> None:
    counted: list[tuple[str, int]] = []
    store = _store(tmp_path, counted=lambda outcome, n: counted.append((outcome, n)))
    # given a victim's answer, and a later request reusing its id (as X-Request-ID)
    store.remember("order-17", "m", "1", ["a"])
    store.flush()
    store.remember("order-17", "m", "1", ["b"])
    store.flush()
    assert counted == [("remembered", 1), ("remembered", 0), ("duplicate_id", 1)]
    # when feedback comes, it is scored against the first answer
    assert store.record("order-17", ["a"], classification=True).answers == ["a"]
    # then a second feedback for the same request, right or wrong, is refused
    with pytest.raises(FeedbackRepeatedError, match="already has its feedback"):
        store.record("order-17", ["b"], classification=True)
    assert store.quality("m")["1"].accuracy == 1.0


def test_a_store_without_room_stops_remembering_and_counts_it(tmp_path: Path) -> None:
    counted: list[tuple[str, int]] = []
    store = _store(tmp_path, max_bytes=64 * 1024, counted=lambda o, n: counted.append((o, n)))
    big = ["x" * 1000] * 30  # about 30 kB an answer: the budget holds two
    for i in range(10):
        store.remember(f"r{i}", "m", "1", big)
        store.flush()
        time.sleep(0.001)
    # the oldest were forgotten to make room, and the newest is there
    assert store.record("r9", big, classification=True).answers == big
    with pytest.raises(UnknownRequestError):
        store.record("r0", big, classification=True)
    # an answer larger than the whole budget is dropped, not written, and counted
    store.remember("huge", "m", "1", ["x" * 100_000])
    store.flush()
    assert counted[-1] == ("storage_full", 1) and store.full
    with pytest.raises(UnknownRequestError, match="storage is full"):
        store.record("huge", ["x"], classification=True)


def test_several_rows_and_versions_and_regression(tmp_path: Path) -> None:
    store = _store(tmp_path, tolerance=1.0)
    store.remember("batch", "m", "1", [1.0, 2.0, 3.0])
    store.remember("one", "m", "2", [10.0])
    store.record("batch", [1.5, 2.0, 6.0], classification=False)
    store.record("one", [10.5], classification=False)
    by_version = store.quality("m")
    assert by_version["1"].rows == 3 and by_version["1"].successes == 2
    assert by_version["1"].rmse == pytest.approx(((0.25 + 0 + 9) / 3) ** 0.5)
    assert by_version["2"].rmse == pytest.approx(0.5)


def test_unknown_expired_and_mismatched_feedback_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path, keep_seconds=0.2)
    store.remember("old", "m", "1", ["a"])
    store.remember("two-rows", "m", "1", ["a", "b"])
    with pytest.raises(
        UnknownRequestError,
        match=r"'nope' of this client: unknown, another client's, or older than 0\.2 s",
    ):
        store.record("nope", ["a"], classification=True)
    with pytest.raises(FeedbackMismatchError, match="answered for 2 row"):
        store.record("two-rows", ["a"], classification=True)
    time.sleep(0.3)
    with pytest.raises(UnknownRequestError):
        store.record("old", ["a"], classification=True)


def test_memory_is_bounded_by_count(tmp_path: Path) -> None:
    store = _store(tmp_path, max_answers=50)
    for i in range(200):
        store.remember(f"r{i}", "m", "1", ["a"])
        time.sleep(0.0005)
    store.flush()
    store.forget_expired()
    with pytest.raises(UnknownRequestError):
        store.record("r0", ["a"], classification=True)
    store.record("r199", ["a"], classification=True)
    assert store._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] <= 51
