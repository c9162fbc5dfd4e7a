"""Prometheus metrics. One registry per app; with several server processes, values are
shared through prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import collections
import os

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from mlship.serving.model import Scores

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# predicted values of a regression model: 1-2.5-5 steps from 0.01 to 1e6, both signs
_STEPS = [m * 10.0**e for e in range(-2, 6) for m in (1.0, 2.5, 5.0)] + [1e6]
VALUE_BUCKETS = tuple([-v for v in reversed(_STEPS)] + [0.0] + _STEPS)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter(
            "predictions",
            "Prediction requests by model and outcome",
            ["model", "version", "status"],
            registry=r,
        )
        self.rows = Counter("predicted_rows", "Rows scored", ["model", "version"], registry=r)
        self.unknown_categories = Counter(
            "unknown_categories",
            "Values of a categorical column the training data never had, answered with a warning",
            ["model", "version", "column"],
            registry=r,
        )
        self.latency = Histogram(
            "prediction_latency_seconds",
            "Time to score a request, queueing included",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.classes = Counter(
            "predicted_class", "Predicted labels", ["model", "version", "label"], registry=r
        )
        # its mean is the accuracy a calibrated model expects: the canary's label-free check
        self.confidence = Histogram(
            "prediction_confidence",
            "Probability of the answered class, per row (classifiers with probabilities)",
            ["model", "version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.values = Histogram(
            "predicted_value",
            "Predicted values (regression)",
            ["model", "version"],
            buckets=VALUE_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being served",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "model_info",
            "The served model (value 1)",
            ["model", "version", "alias", "git_sha"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.reload_failures = Counter(
            "model_reload_failures",
            "Failed attempts to load a new model version",
            ["model", "version"],
            registry=r,
        )
        self.rate_limited = Counter(
            "rate_limit_decisions",
            "Requests judged against their client's rate: allowed, over_requests, over_rows",
            ["outcome"],
            registry=r,
        )
        self.feedback_answers = Counter(
            "feedback_answers",
            "Answers handed to the feedback store, by what became of them: remembered, "
            "duplicate_id (another answer holds the id), storage_full, error",
            ["outcome"],
            registry=r,
        )
        self.feedback_rows = Counter(
            "feedback_rows",
            "Labelled rows of classification feedback, by whether the answer was correct",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.batch_rows = Histogram(
            "batch_rows",
            "Rows per model call (micro-batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )

        # after deployment (serving/monitor.py): computed in each process from its own sample
        # or the shared feedback file; with several processes the largest value is shown
        self.drift = Gauge(
            "feature_drift",
            'Drift of sampled inputs (and answers: feature="prediction") '
            "from the training data: statistic psi, ks, chi2 or p_value",
            ["model", "version", "feature", "statistic"],
            registry=r,
            multiprocess_mode="max",
        )
        self.drifted = Gauge(
            "feature_drifted",
            "1 when the feature's drift is significant and large",
            ["model", "version", "feature"],
            registry=r,
            multiprocess_mode="max",
        )
        self.window_rows = Gauge(
            "monitor_window_rows",
            "Sampled rows the drift gauges are computed on",
            ["model", "version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.live_accuracy = Gauge(
            "live_accuracy",
            "Accuracy over the latest feedback (classification)",
            ["model", "version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.live_rmse = Gauge(
            "live_rmse",
            "RMSE over the latest feedback (regression)",
            ["model", "version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.live_rows = Gauge(
            "live_feedback_rows",
            "Rows the live quality gauges are computed on",
            ["model", "version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.bandit_share = Gauge(
            "bandit_share",
            "Share of requests the bandit sends to each version",
            ["model", "version", "role"],
            registry=r,
            multiprocess_mode="max",
        )
        self.bandit_mean = Gauge(
            "bandit_posterior_mean",
            "Mean of each version's Beta posterior of success",
            ["model", "version", "role"],
            registry=r,
            multiprocess_mode="max",
        )

    def count_answers(self, model: str, version: str, scores: Scores) -> None:
        """The class mix (classification) or the value distribution (regression)."""
        if scores.labels is not None:
            # a Counter, not np.unique: most batches hold a few rows, where NumPy's per-call
            # cost showed in profiles of single-row load
            for label, count in collections.Counter(scores.labels.tolist()).items():
                self.classes.labels(model, version, str(label)).inc(count)
        if scores.probabilities is not None and len(scores.probabilities):
            observe_many(
                self.confidence.labels(model, version),
                scores.probabilities.max(axis=1),
                CONFIDENCE_BUCKETS,
            )
        if scores.values is not None:
            observe_many(self.values.labels(model, version), scores.values, VALUE_BUCKETS)

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            shared = CollectorRegistry()
            multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
            return generate_latest(shared), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def observe_many(histogram: Histogram, values: np.ndarray, buckets: tuple[float, ...]) -> None:
    """histogram.observe(v) for every finite v, counted per bucket in NumPy: one observe per
    value cost a tenth of a 1000-row regression request. prometheus-client has no bulk call,
    so this adds to the child's per-bucket counters and sum as observe does (a value lands in
    the first bucket whose bound is >= it; the last bucket is +Inf)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return
    counts = np.bincount(np.searchsorted(buckets, finite, side="left"), minlength=len(buckets) + 1)
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(finite.sum()))
