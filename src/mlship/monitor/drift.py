"""Drift: how far the data a model sees has moved from the data it was trained on.

A reference `Profile` summarises a table and the model's answers on it, per column:
numeric quantiles, categorical counts, and for text the length and the share of words the
model's training data knew. It is written beside the model at train time. A sample of
current rows (live inputs, a new batch) is then compared with it, check by check:

- numeric (and text length, known-word share, regression predictions): the two-sample
  Kolmogorov-Smirnov statistic against the reference's quantiles, and PSI on its deciles;
- categorical (and the predicted-class mix): a chi-square test on the counts, and PSI.

How verdicts handle sample size: a check flags drift only when the shift is both
significant (p-value under `alpha`, Bonferroni-divided by the number of checks, so a small
sample or many columns cannot flag drift by chance) and large (KS statistic or PSI over
its threshold, so a huge sample cannot flag a shift too small to matter). With fewer than
`min_rows` current rows there is no verdict, only the figures.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlship import files
from mlship.config.params import DataParams, MonitorParams
from mlship.errors import InputError

QUANTILES = np.linspace(0.0, 1.0, 101)  # KS from a profile is within 0.01 of the exact one
DECILES = slice(None, None, 10)  # PSI bins: the reference's deciles
MAX_CATEGORIES = 50  # the most frequent values kept per categorical column
MAX_VOCABULARY = 5000  # words kept per text column
OTHER, MISSING = "(other)", "(missing)"
PREDICTION = "prediction"  # the profile's name for the model's answers
EPSILON = 1e-4  # PSI floor for an empty bin: log(0) otherwise
WORDS = re.compile(r"\w+")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumericProfile(_Frozen):
    kind: Literal["numeric"] = "numeric"
    rows: int  # with a value
    missing: int
    quantiles: tuple[float, ...]  # at QUANTILES; empty when no row has a value


class CategoricalProfile(_Frozen):
    kind: Literal["categorical"] = "categorical"
    rows: int
    missing: int
    counts: dict[str, int]  # the MAX_CATEGORIES most frequent values, the rest under OTHER


class TextProfile(_Frozen):
    kind: Literal["text"] = "text"
    length: NumericProfile  # characters per text
    known_share: NumericProfile  # share of each text's words in `vocabulary`
    vocabulary: tuple[str, ...]


ColumnProfile = Annotated[
    NumericProfile | CategoricalProfile | TextProfile, Field(discriminator="kind")
]
AnswersProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class Profile(_Frozen):
    """What a table looked like: each feature column, and the model's answers."""

    rows: int
    columns: dict[str, ColumnProfile]
    prediction: AnswersProfile | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> Profile:
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            problem = error.errors()[0]
            place = ".".join(str(part) for part in problem["loc"])
            raise InputError(f"{where}: not a data profile: {place}: {problem['msg']}") from error

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls.parse(files.read_json(path), str(path))

    def save(self, path: Path) -> None:
        files.write_json(path, self.model_dump(mode="json"))


# --- building profiles ----------------------------------------------------------------


def _finite(values: Iterable[Any]) -> tuple[np.ndarray, int]:
    """The finite numbers among the values, and how many values were not one."""
    numbers = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
    array = numbers.astype(float).to_numpy()
    finite = array[np.isfinite(array)]
    return finite, len(array) - int(finite.size)


def numeric_profile(values: Iterable[Any]) -> NumericProfile:
    finite, missing = _finite(values)
    quantiles = tuple(float(q) for q in np.quantile(finite, QUANTILES)) if finite.size else ()
    return NumericProfile(rows=int(finite.size), missing=missing, quantiles=quantiles)


def categorical_profile(values: Iterable[Any]) -> CategoricalProfile:
    series = pd.Series(list(values), dtype=object)
    present = series[series.notna()].astype(str)
    counts = Counter(present.tolist())
    kept = dict(counts.most_common(MAX_CATEGORIES))
    rest = sum(counts.values()) - sum(kept.values())
    if rest:
        kept[OTHER] = kept.get(OTHER, 0) + rest
    return CategoricalProfile(rows=len(present), missing=len(series) - len(present), counts=kept)


def _words(text: Any) -> list[str]:
    return WORDS.findall(str(text).lower()) if isinstance(text, str) else []


def known_shares(texts: Sequence[Any], vocabulary: set[str]) -> list[float | None]:
    """Per text, the share of its words found in the vocabulary (None: no words)."""
    shares: list[float | None] = []
    for text in texts:
        words = _words(text)
        shares.append(sum(w in vocabulary for w in words) / len(words) if words else None)
    return shares


def text_profile(texts: Sequence[Any], seed: int = 0) -> TextProfile:
    """The vocabulary comes from one half of the rows and the known-word shares from the
    other: measured on the rows it was built from, the share would be biased high and any
    new sample would look drifted."""
    order = np.random.default_rng(seed).permutation(len(texts))
    half = len(texts) // 2
    counts: Counter[str] = Counter()
    for i in order[:half]:
        counts.update(_words(texts[i]))
    vocabulary = tuple(word for word, _ in counts.most_common(MAX_VOCABULARY))
    held_out = [texts[i] for i in order[half:]]
    return TextProfile(
        length=numeric_profile(len(t) if isinstance(t, str) else None for t in texts),
        known_share=numeric_profile(known_shares(held_out, set(vocabulary))),
        vocabulary=vocabulary,
    )


def profile(frame: pd.DataFrame, data: DataParams, predictions: Sequence[Any] | None) -> Profile:
    """The reference profile of a table (the train split at train time)."""
    columns: dict[str, ColumnProfile] = {}
    for column in data.text_columns:
        columns[column] = text_profile(frame[column].tolist(), data.seed)
    for column in data.categorical_columns:
        columns[column] = categorical_profile(frame[column])
    for column in data.numeric_columns:
        columns[column] = numeric_profile(frame[column])
    answers: NumericProfile | CategoricalProfile | None = None
    if predictions is not None:
        classification = data.task == "classification"
        answers = (categorical_profile if classification else numeric_profile)(predictions)
    return Profile(rows=len(frame), columns=columns, prediction=answers)


# --- comparing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One comparison of a current sample with the reference."""

    column: str  # a feature, `<text column>: length`, or PREDICTION
    statistic: str  # ks | chi2
    value: float  # the KS statistic, or the chi-square statistic
    p_value: float
    psi: float
    effect: float  # what the threshold applies to: the KS statistic, or PSI
    limit: float
    rows: int  # current rows with a value
    reference: dict[str, float]  # what the plots draw: bin or category -> share
    current: dict[str, float]
    verdict: Literal["drift", "stable", "too few rows"]

    @property
    def drifted(self) -> bool:
        return self.verdict == "drift"


def _cdf(quantiles: np.ndarray, x: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
    """The reference's distribution function, linear between its quantiles; at x (right)
    or just below x (left). A value repeated over several quantiles is a step there."""
    levels = QUANTILES
    index = np.searchsorted(quantiles, x, side=side)
    below = np.clip(index - 1, 0, len(quantiles) - 1)
    above = np.clip(index, 0, len(quantiles) - 1)
    width = quantiles[above] - quantiles[below]
    fraction = np.divide(
        x - quantiles[below], width, out=np.zeros_like(x, dtype=float), where=width > 0
    )
    inside = levels[below] + fraction * (levels[above] - levels[below])
    return np.where(index == 0, 0.0, np.where(index == len(quantiles), 1.0, inside))


def ks_statistic(reference: NumericProfile, current: np.ndarray) -> float:
    """sup |F_reference - F_current|, taken at and just below every point of both."""
    quantiles = np.asarray(reference.quantiles)
    ordered = np.sort(current)
    points = np.unique(np.concatenate([ordered, quantiles]))
    gaps = [
        _cdf(quantiles, points, side) - np.searchsorted(ordered, points, side=side) / len(ordered)
        for side in ("left", "right")
    ]
    return float(max(np.abs(gap).max() for gap in gaps))


def ks_p_value(statistic: float, reference_rows: int, current_rows: int) -> float:
    """The asymptotic two-sample p-value (Kolmogorov's distribution, effective size)."""
    effective = reference_rows * current_rows / (reference_rows + current_rows)
    from scipy import stats  # here, not at import: the server starts without it

    return float(stats.kstwobign.sf(statistic * math.sqrt(effective)))


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins."""
    r = np.maximum(np.asarray(reference, dtype=float), EPSILON)
    c = np.maximum(np.asarray(current, dtype=float), EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def _binned(
    reference: NumericProfile, current: np.ndarray, missing: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Shares per reference decile (values outside its range go to the end bins) and of
    missing values, for the reference and the current sample."""
    inner = np.unique(np.asarray(reference.quantiles)[DECILES])[1:-1]
    bounds = np.concatenate([[0.0], _cdf(np.asarray(reference.quantiles), inner, "left"), [1.0]])
    reference_total = reference.rows + reference.missing
    reference_shares = np.diff(bounds) * reference.rows / reference_total
    current_total = len(current) + missing
    bins = np.searchsorted(inner, current, side="right")  # bin k: [inner[k-1], inner[k])
    current_shares = np.bincount(bins, minlength=len(inner) + 1) / current_total
    names = [f"< {edge:.4g}" for edge in inner] + [f"≥ {inner[-1]:.4g}" if inner.size else "all"]
    reference_map = dict(zip(names, reference_shares.tolist(), strict=True))
    current_map = dict(zip(names, current_shares.tolist(), strict=True))
    reference_map[MISSING] = reference.missing / reference_total
    current_map[MISSING] = missing / current_total
    return reference_map, current_map


def compare_numeric(
    column: str,
    reference: NumericProfile,
    values: Iterable[Any],
    limits: MonitorParams,
    alpha: float,
) -> Check:
    finite, missing = _finite(values)
    if not reference.quantiles or finite.size == 0:
        statistic, p_value = (0.0, 1.0)
        shares: tuple[dict[str, float], dict[str, float]] = ({}, {})
        index = 0.0
    else:
        statistic = ks_statistic(reference, finite)
        p_value = ks_p_value(statistic, reference.rows, finite.size)
        shares = _binned(reference, finite, missing)
        index = psi(list(shares[0].values()), list(shares[1].values()))
    return _judged(
        column,
        "ks",
        statistic,
        p_value,
        index,
        statistic,
        limits.max_ks,
        int(finite.size),
        shares,
        limits,
        alpha,
    )


def compare_categorical(
    column: str,
    reference: CategoricalProfile,
    values: Iterable[Any],
    limits: MonitorParams,
    alpha: float,
) -> Check:
    current = categorical_profile(values)
    known = [c for c in reference.counts if c != OTHER]
    categories = [*known, OTHER, MISSING]
    current_counts = Counter({c: n for c, n in current.counts.items() if c in known})
    current_counts[OTHER] = current.rows - sum(current_counts.values())
    current_counts[MISSING] = current.missing
    reference_counts = Counter(reference.counts) | Counter({MISSING: reference.missing})
    table = np.array(
        [
            [reference_counts.get(c, 0) for c in categories],
            [current_counts.get(c, 0) for c in categories],
        ],
        dtype=float,
    )
    table = table[:, table.sum(axis=0) > 0]
    statistic, p_value = chi_square(table)
    totals = table.sum(axis=1, keepdims=True)
    shares = table / np.where(totals > 0, totals, 1)
    present = [c for c in categories if reference_counts.get(c, 0) + current_counts.get(c, 0)]
    reference_map = dict(zip(present, shares[0].tolist(), strict=True))
    current_map = dict(zip(present, shares[1].tolist(), strict=True))
    index = psi(shares[0], shares[1]) if current.rows + current.missing else 0.0
    return _judged(
        column,
        "chi2",
        statistic,
        p_value,
        index,
        index,
        limits.max_psi,
        current.rows + current.missing,
        (reference_map, current_map),
        limits,
        alpha,
    )


def chi_square(table: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity on a 2 x k table of counts."""
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    from scipy import stats

    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


def _judged(
    column: str,
    name: str,
    value: float,
    p_value: float,
    index: float,
    effect: float,
    limit: float,
    rows: int,
    shares: tuple[dict[str, float], dict[str, float]],
    limits: MonitorParams,
    alpha: float,
) -> Check:
    if rows < limits.min_rows:
        verdict: Literal["drift", "stable", "too few rows"] = "too few rows"
    elif p_value < alpha and effect >= limit:
        verdict = "drift"
    else:
        verdict = "stable"
    return Check(
        column, name, value, p_value, index, effect, limit, rows, shares[0], shares[1], verdict
    )


@dataclass(frozen=True)
class DriftReport:
    reference_rows: int
    current_rows: int
    alpha: float  # per check, after dividing monitor.alpha among the checks
    checks: list[Check]

    @property
    def drifted(self) -> list[Check]:
        return [check for check in self.checks if check.drifted]

    @property
    def judged(self) -> bool:
        return any(check.verdict != "too few rows" for check in self.checks)

    @property
    def summary(self) -> str:
        if self.drifted:
            return "drift in " + ", ".join(check.column for check in self.drifted)
        return "no drift" if self.judged else "no verdict: too few current rows"

    def details(self) -> str:
        return self.summary + "".join(
            f"\n  {c.column}: {c.statistic} {c.value:.3f}, p {c.p_value:.2g}, PSI {c.psi:.3f}"
            for c in self.drifted
        )


def _check_count(reference: Profile, with_predictions: bool) -> int:
    per_kind = {"text": 2, "numeric": 1, "categorical": 1}
    count = sum(per_kind[c.kind] for c in reference.columns.values())
    return count + (1 if with_predictions and reference.prediction is not None else 0)


def compare(
    reference: Profile,
    current: pd.DataFrame,
    limits: MonitorParams,
    predictions: Sequence[Any] | None = None,
) -> DriftReport:
    """Every feature column of the reference (and the predictions, when given) against the
    current rows."""
    missing = [c for c in reference.columns if c not in current.columns]
    if missing:
        raise InputError(
            f"the current data has no column {missing[0]!r} "
            f"(it has: {', '.join(map(str, current.columns))})"
        )
    alpha = limits.alpha / max(_check_count(reference, predictions is not None), 1)
    checks: list[Check] = []
    for column, described in reference.columns.items():
        values = current[column].tolist()
        if isinstance(described, TextProfile):
            lengths = [len(v) if isinstance(v, str) else None for v in values]
            checks.append(
                compare_numeric(f"{column}: length", described.length, lengths, limits, alpha)
            )
            shares = known_shares(values, set(described.vocabulary))
            checks.append(
                compare_numeric(
                    f"{column}: known words", described.known_share, shares, limits, alpha
                )
            )
        elif isinstance(described, CategoricalProfile):
            checks.append(compare_categorical(column, described, values, limits, alpha))
        else:
            checks.append(compare_numeric(column, described, values, limits, alpha))
    answers = reference.prediction
    if predictions is not None and answers is not None:
        if isinstance(answers, CategoricalProfile):
            checks.append(compare_categorical(PREDICTION, answers, predictions, limits, alpha))
        else:
            checks.append(compare_numeric(PREDICTION, answers, predictions, limits, alpha))
    return DriftReport(reference.rows, len(current), alpha, checks)
