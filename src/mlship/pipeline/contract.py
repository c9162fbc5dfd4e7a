"""The data contract: rules from params.yaml checked on the ingested splits. Pure functions.

Every rule yields one Check naming the split, column and rule, so a breach reads as
"train.review: null_rate 0.031 > 0.0" rather than as a stack trace during training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd
from pandas.api import types as ptypes

from mlship.card import Category, Features
from mlship.config.params import DataParams, ValidateParams
from mlship.pipeline.data import duplicate_mask, leakage_mask


@dataclass(frozen=True)
class Check:
    rule: str
    where: str
    passed: bool
    detail: str


def _dtype_check(split: str, column: str, series: pd.Series, kind: str) -> Check:
    values = series.dropna()
    if kind == "numeric":
        ok = ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series)
        expected = "a numeric dtype"
    elif kind == "text":
        ok = bool(values.map(lambda value: isinstance(value, str)).all())
        expected = "text (str) values"
    else:  # categorical: any discrete value; floats would make one category per number
        ok = not ptypes.is_float_dtype(series)
        expected = "discrete values (text, integer or boolean)"
    detail = f"dtype {series.dtype}" + ("" if ok else f"; expected {expected}")
    return Check("dtype", f"{split}.{column}", ok, detail)


def _rate_check(rule: str, where: str, count: int, total: int, limit: float) -> Check:
    rate = count / total if total else 0.0
    ok = rate <= limit
    relation = "<=" if ok else ">"
    return Check(rule, where, ok, f"{count}/{total} rows = {rate:.4f} {relation} max {limit}")


def check_contract(
    train: pd.DataFrame, test: pd.DataFrame, data: DataParams, rules: ValidateParams
) -> list[Check]:
    checks: list[Check] = []
    splits = {"train": train, "test": test}
    kinds = {
        **dict.fromkeys(data.text_columns, "text"),
        **dict.fromkeys(data.categorical_columns, "categorical"),
        **dict.fromkeys(data.numeric_columns, "numeric"),
    }
    for split, frame in splits.items():
        missing = [c for c in (*kinds, data.target) if c not in frame.columns]
        checks.append(
            Check(
                "columns_present",
                split,
                not missing,
                "all declared columns present" if not missing else f"missing: {missing}",
            )
        )
        if missing:
            continue
        for column, kind in kinds.items():
            checks.append(_dtype_check(split, column, frame[column], kind))
            checks.append(
                _rate_check(
                    "null_rate",
                    f"{split}.{column}",
                    int(frame[column].isna().sum()),
                    len(frame),
                    rules.max_null_rate,
                )
            )
        for column in data.text_columns:
            text = frame[column].dropna().astype(str)
            checks.append(
                _rate_check(
                    "empty_text_rate",
                    f"{split}.{column}",
                    int((text.str.strip() == "").sum()),
                    len(frame),
                    rules.max_empty_text_rate,
                )
            )
        labels = frame[data.target]
        null_labels = int(labels.isna().sum())
        checks.append(
            Check(
                "label_nulls",
                f"{split}.{data.target}",
                null_labels == 0,
                f"{null_labels} rows without a label",
            )
        )
        checks.append(_target_fits_task(split, data, labels.dropna()))
        if rules.labels is not None and data.task == "classification":
            unknown = sorted(set(labels.dropna()) - set(rules.labels))
            checks.append(
                Check(
                    "labels_allowed",
                    f"{split}.{data.target}",
                    not unknown,
                    f"labels outside {list(rules.labels)}: {unknown}"
                    if unknown
                    else f"all labels in {list(rules.labels)}",
                )
            )
        record = [*data.feature_columns, data.target]
        checks.append(
            _rate_check(
                "duplicate_rate",
                split,
                int(duplicate_mask(frame, record).sum()),
                len(frame),
                rules.max_duplicate_rate,
            )
        )
    if any(not c.passed for c in checks if c.rule == "columns_present"):
        return checks
    checks.append(
        Check(
            "min_test_rows",
            "test",
            len(test) >= rules.min_test_rows,
            f"{len(test)} rows; need at least {rules.min_test_rows} to judge a model",
        )
    )
    if data.task == "classification":
        checks += _class_rules(train, test, data, rules)
    checks.append(
        _rate_check(
            "leakage_rate",
            "test",
            int(leakage_mask(train, test, list(data.feature_columns)).sum()),
            len(test),
            rules.max_leakage_rate,
        )
    )
    return checks


CONTINUOUS_CLASSES = 50  # more distinct numeric labels than this look like a regression target


def _target_fits_task(split: str, data: DataParams, labels: pd.Series) -> Check:
    """Regression needs numbers; classes that are many distinct numbers look continuous."""
    where = f"{split}.{data.target}"
    if data.task == "regression":
        ok = ptypes.is_numeric_dtype(labels) and not ptypes.is_bool_dtype(labels)
        detail = f"dtype {labels.dtype}"
        if not ok:
            detail += "; regression needs numbers (if these are classes, set data.task: "
            detail += "classification)"
        return Check("target_numeric", where, ok, detail)
    distinct = int(labels.nunique())
    continuous = bool(pd.to_numeric(labels, errors="coerce").notna().all())
    continuous = continuous and distinct > CONTINUOUS_CLASSES
    detail = f"{distinct} distinct labels"
    if continuous:
        detail += f", all numbers: this looks continuous (more than {CONTINUOUS_CLASSES}); "
        detail += "for a numeric target set data.task: regression"
    return Check("target_discrete", where, not continuous, detail)


def _class_rules(
    train: pd.DataFrame, test: pd.DataFrame, data: DataParams, rules: ValidateParams
) -> list[Check]:
    """At least two classes, enough rows of each, and no test label unseen in train."""
    checks: list[Check] = []
    counts = train[data.target].value_counts()
    checks.append(
        Check(
            "class_count",
            f"train.{data.target}",
            len(counts) >= 2,
            f"{len(counts)} class(es): {sorted(map(str, counts.index))}; need at least 2",
        )
    )
    expected_classes = rules.labels if rules.labels is not None else tuple(counts.index)
    for label in expected_classes:
        rows = int(counts.get(label, 0))
        checks.append(
            Check(
                "min_rows_per_class",
                f"train.{data.target}={label}",
                rows >= rules.min_rows_per_class,
                f"{rows} rows; need at least {rules.min_rows_per_class}",
            )
        )
    in_test = test[data.target].value_counts()
    for label in expected_classes:
        rows = int(in_test.get(label, 0))
        checks.append(
            Check(
                "min_test_rows_per_class",
                f"test.{data.target}={label}",
                rows >= rules.min_test_rows_per_class,
                f"{rows} rows; need at least {rules.min_test_rows_per_class} to judge this class",
            )
        )
    unseen = sorted(set(test[data.target].dropna()) - set(counts.index))
    checks.append(
        Check(
            "test_labels_seen_in_train",
            f"test.{data.target}",
            not unseen,
            f"labels never seen in train: {unseen}" if unseen else "every test label is in train",
        )
    )
    return checks


def at_the_door(train: pd.DataFrame, features: Features, rules: ValidateParams) -> Features:
    """The declared features with what the contract says every request (and every row
    `mlship score` reads) may hold, as the model card carries it to the server: which
    columns take a missing value (the optional ones; every categorical and numeric one
    when max_null_rate allows missing values at all), and per categorical column the
    categories training saw, the JSON type they came as, and the unknown-category policy."""
    nullable = (
        features.categorical + features.numeric if rules.max_null_rate > 0 else features.optional
    )
    categories = {}
    for column in features.categorical:
        series = train[column]
        coded_as: Literal["text", "integer", "boolean"] = "text"
        if ptypes.is_bool_dtype(series):
            coded_as = "boolean"
        elif ptypes.is_integer_dtype(series):
            coded_as = "integer"
        seen = sorted({str(value) for value in series.dropna()})
        categories[column] = Category(
            values=tuple(seen), coded_as=coded_as, unknown=rules.unknown_categories.policy(column)
        )
    return features.model_copy(update={"nullable": nullable, "categories": categories})


def contract_report(checks: list[Check]) -> dict[str, Any]:
    return {
        "passed": all(c.passed for c in checks),
        "failed": [asdict(c) for c in checks if not c.passed],
        "checks": [asdict(c) for c in checks],
    }


def contract_markdown(checks: list[Check]) -> str:
    verdict = "PASSED" if all(c.passed for c in checks) else "FAILED"
    lines = [
        f"# Data contract: {verdict}",
        "",
        "| rule | where | result | detail |",
        "|---|---|---|---|",
    ]
    for c in checks:
        lines.append(f"| {c.rule} | {c.where} | {'pass' if c.passed else 'FAIL'} | {c.detail} |")
    return "\n".join(lines) + "\n"


def breach_message(checks: list[Check]) -> str:
    failed = [c for c in checks if not c.passed]
    lines = [f"data contract breached ({len(failed)} rule(s)):"]
    lines += [f"  {c.where}: {c.rule}: {c.detail}" for c in failed]
    return "\n".join(lines)
