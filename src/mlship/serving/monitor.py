"""Watching the served models: a sample of requests (inputs and answers) in a sliding
window per model version, compared with the training data's profile for the drift gauges
and written to the sink for `mlship monitor`; answers remembered for POST /feedback, whose
outcomes give the live-quality gauges and the bandit's posteriors.

Per request the event loop only appends to lists; the statistics, the SQLite writes and
the sink's files are done every `monitor_interval_seconds` in a thread.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from mlship.config.params import MonitorParams
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.monitor import drift
from mlship.monitor.sink import ANSWER, AT, FEEDBACK_PREFIX, INPUTS_PREFIX, LABEL, REQUEST_ID
from mlship.monitor.sink import VERSION as VERSION_COLUMN
from mlship.serving.feedback import FeedbackStore, Quality
from mlship.serving.metrics import Metrics
from mlship.serving.model import Columns, Scores, ServedModel

log = logging.getLogger("mlship.serve")
# a large request adds its first rows only: the event loop stays quick, and one client's big
# batch does not fill the window on its own
SAMPLED_ROWS_PER_REQUEST = 64
# set by the middleware for each request: the id its answer is remembered under, and the
# client that asked (its token's name, or its address): only that client's feedback finds it
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
client: contextvars.ContextVar[str] = contextvars.ContextVar("client", default="")


def answers_of(scores: Scores) -> list[Any]:
    """Labels (classification) or values (regression), as plain Python values."""
    found = scores.labels if scores.labels is not None else scores.values
    assert found is not None
    return list(found.tolist())


@dataclass
class Window:
    """The latest sampled rows of one model version, with its answers."""

    model: ServedModel
    rows: collections.deque[tuple[dict[str, Any], Any]]
    added: int = 0  # since the last computation


@dataclass
class Monitor:
    settings: Settings
    metrics: Metrics
    store: FeedbackStore | None = None
    windows: dict[tuple[str, str], Window] = field(default_factory=dict)
    sink_lines: list[bytes] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)  # sampling; the bandit's routing

    scratch: Path | None = None  # the feedback file's folder when none was configured

    @classmethod
    def create(cls, settings: Settings, metrics: Metrics) -> Monitor:
        if settings.monitor_sink and "://" in settings.monitor_sink:
            _check_sink_url(settings.monitor_sink)
        return cls(settings, metrics, rng=random.Random(settings.monitor_seed))

    def open(self) -> None:
        """Open the feedback store, when the server starts (not when the app is made)."""
        settings = self.settings
        if settings.feedback_seconds <= 0 or self.store is not None:
            return
        path = settings.feedback_db
        if path is None:  # one worker: a file of its own, removed at close
            self.scratch = Path(tempfile.mkdtemp(prefix="mlship-feedback-"))
            path = str(self.scratch / "feedback.sqlite")
        self.store = FeedbackStore(
            path,
            settings.feedback_seconds,
            settings.feedback_max_answers,
            settings.feedback_window,
            settings.bandit_tolerance,
            settings.feedback_max_bytes,
            lambda outcome, count: self.metrics.feedback_answers.labels(outcome).inc(count),
        )

    def close(self) -> None:
        """Write the answers still pending (in a shared or configured file, a feedback may
        come after this worker stopped), then close; remove a folder of its own."""
        if self.store is not None:
            try:
                self.store.flush()
            except Exception:  # a locked or full disk: the answers are lost, not the shutdown
                log.exception("cannot write the last answers for feedback")
            self.store.close()
            self.store = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    # --- per request, on the event loop -------------------------------------------------

    def observe(self, model: ServedModel, columns: Columns, scores: Scores, rows: int) -> None:
        rate = self.settings.monitor_sample_rate
        sampled = rate > 0 and self.rng.random() < rate
        if self.store is None and not sampled:
            return
        answers = answers_of(scores)
        request = request_id.get()
        if self.store is not None and request:
            self.store.remember(request, model.name, model.version, answers, client.get())
        if not sampled:
            return
        key = (model.name, model.version)
        window = self.windows.get(key)
        if window is None:
            window = Window(model, collections.deque(maxlen=self.settings.monitor_window_rows))
            self.windows[key] = window
        names = list(columns)
        now = time.time()
        for i in range(min(rows, SAMPLED_ROWS_PER_REQUEST)):
            row = {name: columns[name][i] for name in names}
            window.rows.append((row, answers[i]))
            if self.settings.monitor_sink:
                self.sink_lines.append(
                    orjson.dumps(
                        {
                            **row,
                            ANSWER: answers[i],
                            VERSION_COLUMN: model.version,
                            REQUEST_ID: request,
                            AT: now,
                        }
                    )
                )
        window.added += min(rows, SAMPLED_ROWS_PER_REQUEST)

    def feedback_line(
        self, request: str, version: str, answers: list[Any], truths: list[Any]
    ) -> None:
        if self.settings.monitor_sink:
            now = time.time()
            for answer, truth in zip(answers, truths, strict=True):
                self.sink_lines.append(
                    orjson.dumps(
                        {
                            ANSWER: answer,
                            LABEL: truth,
                            VERSION_COLUMN: version,
                            REQUEST_ID: request,
                            AT: now,
                            "_feedback": True,
                        }
                    )
                )

    # --- every interval, in a thread --------------------------------------------------

    def tick(self, served: Iterable[ServedModel]) -> dict[str, dict[str, Quality]]:
        """Write what was buffered, refresh the gauges; the live quality per model name."""
        current = {(m.name, m.version) for m in served}
        # copies: the event loop may add a window while this thread runs
        for key in [k for k in list(self.windows) if k not in current]:  # a swapped version
            del self.windows[key]
        for window in list(self.windows.values()):
            if window.added:
                window.added = 0
                self._drift(window)
        self._write_sink()
        if self.store is None:
            return {}
        self.store.flush()
        self.store.forget_expired()
        qualities = {name: self.store.quality(name) for name in {m.name for m in served}}
        for name, by_version in qualities.items():
            for version, quality in by_version.items():
                self.metrics.live_rows.labels(name, version).set(quality.rows)
                if quality.accuracy is not None:
                    self.metrics.live_accuracy.labels(name, version).set(quality.accuracy)
                if quality.rmse is not None:
                    self.metrics.live_rmse.labels(name, version).set(quality.rmse)
        return qualities

    def _drift(self, window: Window) -> None:
        model = window.model
        self.metrics.window_rows.labels(model.name, model.version).set(len(window.rows))
        if model.profile is None:
            return
        rows = list(window.rows)
        frame = pd.DataFrame([row for row, _ in rows])
        limits = MonitorParams.model_validate(model.card.params.get("monitor", {}))
        report = drift.compare(model.profile, frame, limits, [answer for _, answer in rows])
        for check in report.checks:
            labels = (model.name, model.version, check.column)
            self.metrics.drifted.labels(*labels).set(1 if check.drifted else 0)
            figures = {"psi": check.psi, check.statistic: check.value, "p_value": check.p_value}
            for statistic, value in figures.items():
                self.metrics.drift.labels(*labels, statistic).set(value)

    def _write_sink(self) -> None:
        lines, self.sink_lines = self.sink_lines, []
        location = self.settings.monitor_sink
        if not lines or not location:
            return
        feedback = [line for line in lines if b'"_feedback":true' in line]
        inputs = [line for line in lines if b'"_feedback":true' not in line]
        stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        for prefix, part in ((INPUTS_PREFIX, inputs), (FEEDBACK_PREFIX, feedback)):
            if not part:
                continue
            target = f"{location.rstrip('/')}/{prefix}{stamp}.jsonl"
            try:
                _write(target, b"\n".join(part) + b"\n")
            except OSError as error:  # the sink is for analysis: serving goes on without it
                log.warning("monitor sink %s: cannot write %d rows: %s", target, len(part), error)


def _check_sink_url(url: str) -> None:
    """A sink URL needs fsspec and the filesystem's package in the image: say so at start,
    not at the first write."""
    try:
        import fsspec

        fsspec.get_filesystem_class(url.split("://", 1)[0])
    except (ImportError, ValueError) as error:
        raise InputError(
            f"MLSHIP_MONITOR_SINK={url}: cannot write there from this server ({error}); "
            "install fsspec and the filesystem's package (gcsfs for gs://) in the image, "
            "or use a local path (a mounted volume)"
        ) from error


def _write(target: str, data: bytes) -> None:
    if "://" not in target or target.startswith("file://"):
        path = Path(target.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    import fsspec

    filesystem, path_in = fsspec.core.url_to_fs(target)
    filesystem.makedirs(path_in.rsplit("/", 1)[0], exist_ok=True)
    with filesystem.open(path_in, "wb") as handle:
        handle.write(data)
