"""The run report's plots, drawn with matplotlib as inline SVG (no network, no scripts).

matplotlib is imported here only, from the pipeline's extra: the serving image never has it.
Each function takes plain arrays and returns one `<svg>` element as text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

CANDIDATE, CHAMPION = "#1f6feb", "#d4a72c"
WIDTH, HEIGHT = 5.0, 3.6  # inches at matplotlib's 72 points each


def _svg(figure: Figure) -> str:
    figure.tight_layout()
    buffer = io.StringIO()
    # text as <text>, not glyph outlines: a third of the size, and searchable in the page
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype


def _figure(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH, HEIGHT))
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.25)
    return figure, axes


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    figure = Figure(figsize=(WIDTH, HEIGHT))
    axes = figure.add_subplot()
    values = np.asarray(matrix)
    axes.imshow(values, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title("Confusion matrix (candidate, test set)", fontsize=10)
    threshold = values.max() / 2 if values.size else 0
    for (row, column), count in np.ndenumerate(values):
        axes.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=9,
            color="white" if count > threshold else "black",
        )
    return _svg(figure)


def roc_and_pr(
    truth: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None, positive: str
) -> tuple[str, str]:
    """ROC and precision-recall of one class's scores, the champion's beside the candidate's."""
    roc, roc_axes = _figure(f"ROC, class {positive!r}")
    pr, pr_axes = _figure(f"Precision-recall, class {positive!r}")
    for name, scores, colour in (
        ("candidate", candidate, CANDIDATE),
        ("champion", champion, CHAMPION),
    ):
        if scores is None:
            continue
        fpr, tpr, _ = skm.roc_curve(truth, scores)
        auc = skm.roc_auc_score(truth, scores)
        roc_axes.plot(fpr, tpr, color=colour, label=f"{name} (AUC {auc:.3f})")
        precision, recall, _ = skm.precision_recall_curve(truth, scores)
        ap = skm.average_precision_score(truth, scores)
        pr_axes.plot(recall, precision, color=colour, label=f"{name} (AP {ap:.3f})")
    roc_axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for axes, x, y in (
        (roc_axes, "false positive rate", "true positive rate"),
        (pr_axes, "recall", "precision"),
    ):
        axes.set_xlabel(x)
        axes.set_ylabel(y)
        axes.legend(fontsize=8, loc="lower right" if axes is roc_axes else "lower left")
    return _svg(roc), _svg(pr)


def calibration(
    truth: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None, positive: str
) -> str:
    """Reliability: the share of the class among rows binned by the predicted probability."""
    figure, axes = _figure(f"Calibration, class {positive!r}")
    axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect")
    for name, scores, colour in (
        ("candidate", candidate, CANDIDATE),
        ("champion", champion, CHAMPION),
    ):
        if scores is None:
            continue
        observed, predicted = calibration_curve(truth, scores, n_bins=10, strategy="quantile")
        axes.plot(predicted, observed, marker="o", ms=3, color=colour, label=name)
    axes.set_xlabel("predicted probability")
    axes.set_ylabel("observed share")
    axes.legend(fontsize=8)
    return _svg(figure)


def per_class(labels: Sequence[str], metrics: dict[str, Sequence[float]]) -> str:
    """Precision, recall and F1 of each class, side by side."""
    figure, axes = _figure("Per class (candidate, test set)")
    width = 0.8 / max(len(metrics), 1)
    positions = np.arange(len(labels))
    for i, (name, values) in enumerate(metrics.items()):
        axes.bar(positions + i * width, values, width, label=name)
    axes.set_xticks(positions + width * (len(metrics) - 1) / 2, labels, fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.legend(fontsize=8, loc="lower right")
    return _svg(figure)


MAX_POINTS = 1000  # a scatter's points per model: each is an SVG element in the page


def _thinned(count: int) -> np.ndarray:
    """At most MAX_POINTS row indexes, the same for every model (seeded)."""
    if count <= MAX_POINTS:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, MAX_POINTS, replace=False))


def predicted_vs_actual(
    actual: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None
) -> str:
    """Both models on the same (at most MAX_POINTS) rows: the champion's as hollow rings
    over the candidate's dots, so neither hides the other."""
    shown = _thinned(len(actual))
    title = "Predicted against actual (test set"
    title += f", {len(shown):,} of {len(actual):,} rows)" if len(shown) < len(actual) else ")"
    figure, axes = _figure(title)
    low, high = float(np.min(actual)), float(np.max(actual))
    axes.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
    axes.scatter(
        actual[shown], candidate[shown], s=6, alpha=0.6, color=CANDIDATE, label="candidate"
    )
    if champion is not None:
        axes.scatter(
            actual[shown],
            champion[shown],
            s=14,
            facecolors="none",
            linewidths=0.7,
            edgecolors=CHAMPION,
            label="champion",
        )
    axes.set_xlabel("actual")
    axes.set_ylabel("predicted")
    axes.legend(fontsize=8)
    return _svg(figure)


def residuals(actual: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None) -> str:
    figure, axes = _figure("Residuals (predicted - actual)")
    both = [candidate - actual] + ([champion - actual] if champion is not None else [])
    edges = np.histogram_bin_edges(np.concatenate(both), bins=40)
    axes.hist(candidate - actual, bins=list(edges), alpha=0.6, color=CANDIDATE, label="candidate")
    if champion is not None:  # an outline on top: the candidate's bars stay visible beneath
        axes.hist(
            champion - actual,
            bins=list(edges),
            histtype="step",
            lw=1.5,
            color=CHAMPION,
            label="champion",
        )
    axes.axvline(0, color="grey", lw=0.8)
    axes.set_xlabel("residual")
    axes.set_ylabel("rows")
    axes.legend(fontsize=8)
    return _svg(figure)


def latency(percentiles: dict[str, float]) -> str:
    """The load test's response-time percentiles."""
    figure, axes = _figure("Load test: response time by percentile")
    names = sorted(percentiles, key=lambda name: float(name.removeprefix("p").replace("_", ".")))
    axes.plot(range(len(names)), [percentiles[n] for n in names], marker="o", color=CANDIDATE)
    axes.set_xticks(range(len(names)), names, fontsize=8)
    axes.set_ylabel("ms")
    return _svg(figure)


def shares(title: str, reference: dict[str, float], current: dict[str, float]) -> str:
    """One column's distribution, the reference's bars beside the current sample's."""
    figure, axes = _figure(title)
    names = list(reference)
    positions = np.arange(len(names))
    axes.bar(positions - 0.2, [reference[n] for n in names], 0.4, color=CHAMPION, label="reference")
    axes.bar(
        positions + 0.2, [current.get(n, 0.0) for n in names], 0.4, color=CANDIDATE, label="current"
    )
    axes.set_xticks(positions, names, rotation=35, ha="right", fontsize=7)
    axes.set_ylabel("share of rows")
    axes.legend(fontsize=8)
    return _svg(figure)
