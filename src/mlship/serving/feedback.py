"""Feedback: the true outcome of an answered request, reported later by its request id.

Answers are remembered in a SQLite file every server process shares (a feedback may reach
another worker than the one that answered), for `feedback_seconds`, at most
`feedback_max_answers` rows and `feedback_max_bytes` of file; older ones are forgotten, so a
late feedback gets a 404 that says so. Answers are buffered in memory and written in
batches off the event loop.

The store defends the live figures the bandit and retraining read: an answer is remembered
under the client that asked (its token's name, or its address) and its request id, so only
that client's feedback finds it — another client can neither score it with a feedback of
its own, nor take a request id first to have its answer kept instead; the first answer
under a client's id is kept; a request gets one feedback; and a store that cannot grow (its
budget, a nearly full disk) stops remembering and says so in a metric; it never fails a
request.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("mlship.serve")

# what became of an answer handed to remember(): a closed set, a metric label
Remembered = Literal["remembered", "duplicate_id", "storage_full", "error"]
# the disk space the store leaves to the rest of the server (metrics files, temp files)
FREE_SPACE_RESERVE = 8 * 1024 * 1024
ROW_OVERHEAD = 64  # bytes SQLite spends on a row besides its text, about
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT PRIMARY KEY, model TEXT, version TEXT, answers TEXT, at REAL);
CREATE INDEX IF NOT EXISTS answers_at ON answers (at);
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT PRIMARY KEY, model TEXT, version TEXT, rows INTEGER, correct INTEGER,
    squared_error REAL, at REAL);
CREATE INDEX IF NOT EXISTS outcomes_version ON outcomes (model, version, at);
"""


def answer_key(client: str, request_id: str) -> str:
    """Where an answer is remembered: its client and its request id, unambiguously."""
    return f"{len(client)}:{client}:{request_id}"


class UnknownRequestError(LookupError):
    """No answer is remembered under this request id."""


class FeedbackMismatchError(ValueError):
    """The feedback does not fit the answer it refers to."""


class FeedbackRepeatedError(ValueError):
    """The request already has its feedback."""


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
        max_bytes: int = 16 * 1024 * 1024,
        counted: Callable[[Remembered, int], None] | None = None,
    ) -> None:
        self.path = path
        self.keep_seconds = keep_seconds
        self.max_answers = max_answers
        self.max_bytes = max_bytes
        self.window = window
        self.tolerance = tolerance  # regression: an error within it counts as a success
        self.counted = counted or (lambda outcome, count: None)
        self.full = False  # the last write found no room: answers are not being remembered
        self._pending: list[tuple[str, str, str, str, float]] = []
        self._last_error = 0.0
        # one connection, used by one thread at a time under the lock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # losing the last answers in a crash is fine
        self._db.execute(f"PRAGMA journal_size_limit={1024 * 1024}")  # the log shrinks back
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

    def remember(
        self, request_id: str, model: str, version: str, answers: list[Any], client: str = ""
    ) -> None:
        """Called per request on the event loop: an append, written later by flush()."""
        import orjson

        key = answer_key(client, request_id)
        self._pending.append((key, model, version, orjson.dumps(answers).decode(), time.time()))

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Write the buffered answers (run in a thread). Never raises: what cannot be
        written is dropped and counted."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        needed = sum(len(row[0]) + len(row[3]) + ROW_OVERHEAD for row in pending)
        try:
            with self._transaction() as db:
                if not self._room_for(db, needed):
                    self.full = True
                    self.counted("storage_full", len(pending))
                    return
                # the first answer under an id stays: a reused id cannot replace another's
                written = db.executemany(
                    "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)", pending
                ).rowcount
        except sqlite3.Error as error:
            full = isinstance(error, sqlite3.OperationalError) and "full" in str(error)
            self.full = self.full or full
            self.counted("storage_full" if full else "error", len(pending))
            self._log_error(error, len(pending))
            return
        self.full = False
        self.counted("remembered", written)
        if written < len(pending):
            self.counted("duplicate_id", len(pending) - written)

    def _room_for(self, db: sqlite3.Connection, needed: int) -> bool:
        """Whether `needed` more bytes fit the budget (forgetting the oldest answers first)
        and the disk (keeping FREE_SPACE_RESERVE free for the rest of the server)."""
        page = db.execute("PRAGMA page_size").fetchone()[0]
        free_pages = db.execute("PRAGMA freelist_count").fetchone()[0]
        used = (db.execute("PRAGMA page_count").fetchone()[0] - free_pages) * page
        if used + needed > self.max_bytes:  # forget the oldest quarter, then reuse its pages
            db.execute(
                "DELETE FROM answers WHERE at <= (SELECT at FROM answers ORDER BY at "
                "LIMIT 1 OFFSET (SELECT COUNT(*) / 4 FROM answers))"
            )
            free_pages = db.execute("PRAGMA freelist_count").fetchone()[0]
            used = (db.execute("PRAGMA page_count").fetchone()[0] - free_pages) * page
            if used + needed > self.max_bytes:
                return False
        growth = max(0, needed - int(free_pages) * int(page))
        disk = os.statvfs(Path(self.path).resolve().parent)
        return growth == 0 or disk.f_bavail * disk.f_frsize - growth > FREE_SPACE_RESERVE

    def _log_error(self, error: sqlite3.Error, rows: int) -> None:
        now = time.monotonic()
        if now - self._last_error > 60:  # once a minute, not once per flush
            self._last_error = now
            log.warning(
                "feedback store %s: %d answer(s) not remembered: %s", self.path, rows, error
            )

    def forget_expired(self) -> None:
        """Drop answers past their time or beyond the limit (run in a thread)."""
        try:
            with self._transaction() as db:
                db.execute("DELETE FROM answers WHERE at < ?", (time.time() - self.keep_seconds,))
                for table in ("answers", "outcomes"):
                    db.execute(
                        f"DELETE FROM {table} WHERE at < (SELECT at FROM {table} "
                        "ORDER BY at DESC LIMIT 1 OFFSET ?)",
                        (self.max_answers,),
                    )
        except sqlite3.Error as error:
            self._log_error(error, 0)

    def record(
        self, request_id: str, truths: list[Any], classification: bool, client: str = ""
    ) -> Outcome:
        """Score the answer remembered for this client's request against the truth, once
        (run in a thread); the answer is then forgotten."""
        import orjson

        self.flush()
        key = answer_key(client, request_id)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM outcomes WHERE request_id = ?", (key,)).fetchone():
                raise FeedbackRepeatedError(f"request {request_id!r} already has its feedback")
            found = db.execute(
                "SELECT model, version, answers, at FROM answers WHERE request_id = ?", (key,)
            ).fetchone()
            if found is None or found[3] < time.time() - self.keep_seconds:
                degraded = (
                    "; the server is not remembering answers now (its feedback storage is full)"
                    if self.full
                    else ""
                )
                raise UnknownRequestError(
                    f"no answer is remembered for request id {request_id!r} of this client: "
                    f"unknown, another client's, or older than {self.keep_seconds:g} s{degraded}"
                )
            model, version, raw, _ = found
            answers = orjson.loads(raw)
            if len(truths) != len(answers):
                raise FeedbackMismatchError(
                    f"request {request_id!r} was answered for {len(answers)} row(s); the "
                    f"feedback gives {len(truths)}"
                )
            if classification:
                correct = sum(str(a) == str(t) for a, t in zip(answers, truths, strict=True))
                squared = None
            else:
                errors = [float(a) - float(t) for a, t in zip(answers, truths, strict=True)]
                squared = sum(e * e for e in errors)
                limit = self.tolerance
                correct = sum(abs(e) <= limit for e in errors) if limit is not None else 0
            # one feedback per request: a flood of "corrections" cannot rewrite the record
            db.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, version, len(answers), correct, squared, time.time()),
            )
            db.execute("DELETE FROM answers WHERE request_id = ?", (key,))
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
