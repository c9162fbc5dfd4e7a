"""After deployment: has the data drifted from the training data (`mlship drift`), and is
the live model still good enough by its feedback (`mlship monitor`, which the scheduled
retraining job in each CI runs)?

Live data is what the server samples (MLSHIP_MONITOR_SINK; see sink.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlship import files
from mlship.card import PROFILE_FILE, ModelCard
from mlship.config.params import Params
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.monitor import drift
from mlship.monitor.drift import DriftReport, Profile
from mlship.monitor.sink import ANSWER, FEEDBACK_PREFIX, INPUTS_PREFIX, LABEL, VERSION, read_rows
from mlship.pipeline import artifacts, data
from mlship.pipeline.features import feature_frame
from mlship.registry import loading
from mlship.registry.loading import MODELS_SCHEME
from mlship.reports.drift_report import write_reports


def reference_profile(
    params: Params, settings: Settings, location: str, model: Any | None
) -> Profile:
    """A registry version (models:/name@alias or /version: its run's profile), a model
    directory (its profile.json), a saved profile (.json), or a data file profiled here
    (with the model's answers when a model is given)."""
    if location.startswith(MODELS_SCHEME):
        return loading.version_profile(settings.tracking_uri, location)
    path = Path(location)
    if path.is_dir() and (path / PROFILE_FILE).is_file():
        return Profile.load(path / PROFILE_FILE)
    if location.endswith(".json"):
        return Profile.load(path)
    frame = data.select_columns(read_rows(location), params.data, location)
    answers = None if model is None else _answers(model, frame, params)
    return drift.profile(frame, params.data, answers)


def _answers(model: Any, frame: pd.DataFrame, params: Params) -> list[Any]:
    return list(np.asarray(model.predict(feature_frame(frame, params.data))).tolist())


@dataclass(frozen=True)
class DriftVerdict:
    report: DriftReport
    written: list[Path]


def drift_check(
    params: Params,
    settings: Settings,
    reference: str,
    current: str,
    out: Path,
    model_dir: Path | None,
) -> DriftVerdict:
    """Compare current rows with the reference; write JSON, Markdown, HTML and JUnit.
    The answers are compared too when a model is given or the rows carry the server's."""
    model = None
    if model_dir is not None:
        model = artifacts.load_model(model_dir, ModelCard.load(model_dir))
    profile = reference_profile(params, settings, reference, model)
    rows = read_rows(current, INPUTS_PREFIX)
    missing = [c for c in params.data.feature_columns if c not in rows.columns]
    if missing:
        raise InputError(
            f"{current}: no column {missing[0]!r}; it has: {', '.join(map(str, rows.columns))}"
        )
    if model is not None:
        answers: list[Any] | None = _answers(model, rows, params)
    else:
        answers = rows[ANSWER].tolist() if ANSWER in rows.columns else None
    report = drift.compare(profile, rows, params.monitor, answers)
    context = {"reference": reference, "current": current}
    return DriftVerdict(report, write_reports(report, out, context))


@dataclass(frozen=True)
class LiveQuality:
    """The live model's quality on the predictions that got feedback."""

    rows: int
    metric: str  # accuracy (classification) or rmse (regression)
    value: float | None  # None: no feedback
    limit: float | None
    by_version: dict[str, float]

    @property
    def judged(self) -> bool:
        return self.value is not None

    @property
    def failed(self) -> bool:
        if self.value is None or self.limit is None:
            return False
        return self.value < self.limit if self.metric == "accuracy" else self.value > self.limit


def live_quality(params: Params, feedback: pd.DataFrame) -> LiveQuality:
    """Accuracy or RMSE of the answers that got feedback (the sink's feedback parts)."""
    needed = [c for c in (ANSWER, LABEL) if c not in feedback.columns]
    if needed:
        raise InputError(f"the feedback has no column {needed[0]!r} (is it the sink's?)")
    monitor = params.monitor
    classification = params.data.task == "classification"
    if classification:
        scored = feedback[ANSWER].astype(str) == feedback[LABEL].astype(str)
        metric, limit = "accuracy", monitor.min_live_accuracy
    else:
        answers = pd.to_numeric(feedback[ANSWER], errors="coerce")
        truth = pd.to_numeric(feedback[LABEL], errors="coerce")
        scored = (answers - truth) ** 2
        metric, limit = "rmse", monitor.max_live_rmse

    def summarise(values: pd.Series) -> float:
        mean = float(values.mean())
        return mean if classification else float(np.sqrt(mean))

    by_version: dict[str, float] = {}
    if VERSION in feedback.columns:
        for version, values in scored.groupby(feedback[VERSION].astype(str)):
            by_version[str(version)] = summarise(values.dropna())
    enough = len(scored.dropna()) >= monitor.min_feedback_rows
    value = summarise(scored.dropna()) if enough else None
    return LiveQuality(len(scored.dropna()), metric, value, limit, by_version)


@dataclass(frozen=True)
class MonitorVerdict:
    drift: DriftVerdict
    quality: LiveQuality | None  # None: no feedback in the sample folder

    @property
    def quality_line(self) -> str:
        quality = self.quality
        if quality is None:
            return "no feedback yet"
        if quality.value is None:
            return f"too little feedback ({quality.rows} rows) for a verdict"
        limit = "no limit set" if quality.limit is None else f"limit {quality.limit:g}"
        return f"{quality.metric} {quality.value:.4f} on {quality.rows} rows ({limit})"

    @property
    def reason(self) -> str:
        reasons = []
        if self.drift.report.drifted:
            reasons.append(self.drift.report.summary)
        if self.quality is not None and self.quality.failed:
            reasons.append(f"live {self.quality_line}")
        return "; ".join(reasons)

    @property
    def retrain(self) -> bool:
        return bool(self.reason)


def monitor(
    params: Params, settings: Settings, reference: str, live: str, out: Path
) -> MonitorVerdict:
    """Drift of the sampled live inputs and answers, and live quality from feedback;
    monitor.json records both and whether to retrain."""
    found = drift_check(params, settings, reference, live, out, None)
    try:
        feedback = read_rows(live, FEEDBACK_PREFIX)
    except InputError:  # no feedback part files: nobody has reported outcomes yet
        quality = None
    else:
        quality = live_quality(params, feedback)
    verdict = MonitorVerdict(found, quality)
    files.write_json(
        out / "monitor.json",
        {
            "retrain": verdict.retrain,
            "reason": verdict.reason,
            "drift": found.report.summary,
            "live_quality": None if quality is None else asdict(quality),
        },
    )
    return verdict
