"""Feedback: the true outcome of an answered request, reported later by its request id.

Answers are remembered in a SQLite file every server process shares (a feedback may reach
another worker than the one that answered), for `feedback_seconds` and at most
`feedback_max_answers` rows; older ones are forgotten, so a late feedback gets a 404 that
says so. Answers are buffered in memory and written in batches off the event loop.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT PRIMARY KEY, model TEXT, version TEXT, answers TEXT, at REAL);
CREATE INDEX IF NOT EXISTS answers_at ON answers (at);
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT PRIMARY KEY, model TEXT, version TEXT, rows INTEGER, correct INTEGER,
    squared_error REAL, at REAL);
CREATE INDEX IF NOT EXISTS outcomes_version ON outcomes (model, version, at);
"""


class UnknownRequestError(LookupError):
    """No answer is remembered under this request id."""


class FeedbackMismatchError(ValueError):
    """The feedback does not fit the answer it refers to."""


@dataclass(frozen=True)
class Quality:
    """Live quality of one model version over the rows of its latest feedbacks."""

    rows: int
    successes: int  # correct labels; for regression, errors within the bandit's tolerance
    accuracy: float | None  # classification
    rmse: float | None  # regression

    @property
    def failures(self) -> int:
        return self.rows - self.successes


@dataclass(frozen=True)
class Outcome:
    model: str
    version: str
    answers: list[Any]
    truths: list[Any]


class FeedbackStore:
    def __init__(
        self,
        path: str,
        keep_seconds: float,
        max_answers: int,
        window: int,
        tolerance: float | None = None,
    ) -> None:
        self.path = path
        self.keep_seconds = keep_seconds
        self.max_answers = max_answers
        self.window = window
        self.tolerance = tolerance  # regression: an error within it counts as a success
        self._pending: list[tuple[str, str, str, str, float]] = []
        # one connection, used by one thread at a time under the lock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # losing the last answers in a crash is fine
        self._db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction: a batch of rows costs one write to the log, not one per row
        (autocommitted inserts took about 30 µs a row and 7% of a core under load)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock now, waiting up to 5 s
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def remember(self, request_id: str, model: str, version: str, answers: list[Any]) -> None:
        """Called per request on the event loop: an append, written later by flush()."""
        import orjson

        self._pending.append(
            (request_id, model, version, orjson.dumps(answers).decode(), time.time())
        )

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Write the buffered answers (run in a thread)."""
        pending, self._pending = self._pending, []
        if pending:
            with self._transaction() as db:
                db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)", pending)

    def forget_expired(self) -> None:
        """Drop answers past their time or beyond the limit (run in a thread)."""
        with self._transaction() as db:
            db.execute("DELETE FROM answers WHERE at < ?", (time.time() - self.keep_seconds,))
            db.execute(
                "DELETE FROM answers WHERE at < (SELECT at FROM answers ORDER BY at DESC "
                "LIMIT 1 OFFSET ?)",
                (self.max_answers,),
            )

    def record(self, request_id: str, truths: list[Any], classification: bool) -> Outcome:
        """Score the remembered answer against the truth (run in a thread)."""
        self.flush()
        with self._transaction() as db:
            found = db.execute(
                "SELECT model, version, answers, at FROM answers WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        if found is None or found[3] < time.time() - self.keep_seconds:
            raise UnknownRequestError(
                f"no answer is remembered for request id {request_id!r}: unknown, or older "
                f"than {self.keep_seconds:g} s"
            )
        import orjson

        model, version, raw, _ = found
        answers = orjson.loads(raw)
        if len(truths) != len(answers):
            raise FeedbackMismatchError(
                f"request {request_id!r} was answered for {len(answers)} row(s); the feedback "
                f"gives {len(truths)}"
            )
        if classification:
            correct = sum(str(a) == str(t) for a, t in zip(answers, truths, strict=True))
            squared = None
        else:
            errors = [float(a) - float(t) for a, t in zip(answers, truths, strict=True)]
            squared = sum(e * e for e in errors)
            limit = self.tolerance
            correct = sum(abs(e) <= limit for e in errors) if limit is not None else 0
        with self._transaction() as db:
            # a repeated feedback for a request replaces the earlier one
            db.execute(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request_id, model, version, len(answers), correct, squared, time.time()),
            )
        return Outcome(model, version, answers, truths)

    def quality(self, model: str) -> dict[str, Quality]:
        """Per version, over its latest `window` feedbacks (run in a thread)."""
        with self._transaction() as db:
            versions = [
                v
                for (v,) in db.execute(
                    "SELECT DISTINCT version FROM outcomes WHERE model = ?", (model,)
                )
            ]
            found: dict[str, Quality] = {}
            for version in versions:
                rows = db.execute(
                    "SELECT rows, correct, squared_error FROM outcomes WHERE model = ? "
                    "AND version = ? ORDER BY at DESC LIMIT ?",
                    (model, version, self.window),
                ).fetchall()
                found[version] = _quality(rows)
        return found


def _quality(outcomes: list[tuple[int, int, float | None]]) -> Quality:
    rows = sum(count for count, _, _ in outcomes)
    successes = sum(correct for _, correct, _ in outcomes)
    squared = [error for _, _, error in outcomes if error is not None]
    if squared:  # regression
        return Quality(rows, successes, None, math.sqrt(sum(squared) / rows))
    return Quality(rows, successes, successes / rows if rows else None, None)
