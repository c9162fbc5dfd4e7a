"""The gate's reports: JSON for machines, Markdown for the pull-request comment, JUnit XML
for CI dashboards (one test case per criterion, failure messages carrying the numbers)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from junitparser import Failure, JUnitXml, TestCase, TestSuite

from mlship.config.params import flatten
from mlship.gate.criteria import Criterion


def gate_json(criteria: list[Criterion], context: dict[str, Any]) -> dict[str, Any]:
    return {
        "passed": all(c.passed for c in criteria),
        "failed": [c.name for c in criteria if not c.passed],
        "criteria": [asdict(c) for c in criteria],
        **context,
    }


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _interval(c: Criterion) -> str:
    return "" if c.interval is None else f"[{c.interval[0]:+.4f}, {c.interval[1]:+.4f}]"


def gate_markdown(
    criteria: list[Criterion],
    metrics: dict[str, Any],
    params_diff: list[tuple[str, Any, Any]] | None,
    context: dict[str, Any],
) -> str:
    passed = all(c.passed for c in criteria)
    failed = sum(not c.passed for c in criteria)
    lines = [
        "<!-- mlship-gate -->",
        f"## mlship gate: {'✅ PASSED' if passed else f'❌ FAILED ({_count(failed)})'}",
        "",
        f"Candidate: `{context.get('model_name', 'the model')}` "
        f"({_estimator(context)}) from MLflow run "
        f"`{context['candidate_run_id']}`, git `{context['git_sha'][:12]}`"
        + (
            " ⚠️ with uncommitted changes (not reproducible from that commit)"
            if context.get("git_dirty")
            else ""
        )
        + ". "
        + (
            f"Champion: version {context['champion_version']}."
            if context.get("champion_version")
            else "No champion of this name yet: the first model under it, judged on "
            "thresholds, behaviour and the data contract."
        ),
        "",
        "| | criterion | candidate | champion / baseline | threshold | interval | p-value "
        "| detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in criteria:
        p_value = "" if c.p_value is None else f"{c.p_value:.4g}"
        mark = "❌" if not c.passed else "⚠️" if c.worse_than_champion else "✅"
        lines.append(
            f"| {mark} | {c.name} | {_cell(c.value)} | {_cell(c.champion)} "
            f"| {_cell(c.limit)} | {_interval(c)} | {p_value} | {c.detail.replace('|', '/')} |"
        )
    if any(c.passed and c.worse_than_champion for c in criteria):
        lines += ["", "⚠️ passed within the margin, but worse than the champion."]
    lines += _test_sets(context)
    lines += _metrics_beside(metrics, context.get("champion_metrics"), context)
    lines += (
        _confusion(metrics["confusion_matrix"])
        if "confusion_matrix" in metrics
        else (_errors(metrics))
    )
    unmeasured = context.get("not_measured") or []
    if unmeasured:
        lines += ["Not measured: " + "; ".join(unmeasured) + ".", ""]
    trusted = context.get("trusted_types") or []
    if trusted:
        lines += [
            "Types trusted beyond the built-in list (`train.trusted_types`): "
            + ", ".join(f"`{name}`" for name in trusted),
            "",
        ]
    champion = f"champion v{context['champion_version']}"
    if params_diff is None:
        lines.append("Params: no champion to compare with.")
    elif not params_diff:
        lines.append(f"Params: the same as the {champion}'s.")
    else:
        lines += [
            f"<details open><summary>Params changed from the {champion}'s</summary>",
            "",
            f"| key | {champion} | this candidate |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{key}` | `{_short(old)}` | `{_short(new)}` |" for key, old, new in params_diff
        ]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _balance(test_set: dict[str, Any]) -> str:
    balance = test_set.get("balance") or {}
    return ", ".join(f"{key} {value:g}" for key, value in balance.items())


def _test_sets(context: dict[str, Any]) -> list[str]:
    """The test set judged on; beside the champion's when it changed since the champion was
    gated (the criteria then judge the candidate on both)."""
    ours = context.get("test_set")
    if not ours:
        return []
    theirs = context.get("champion_test_set")
    if not theirs or theirs.get("digest") == ours.get("digest"):
        return [
            "",
            f"Test set: {ours['source']}, {ours['rows']} rows ({_balance(ours)}), sha256 "
            f"`{ours['digest'][:12]}`" + (", the champion's too." if theirs else "."),
        ]
    champion = f"champion v{context.get('champion_version')}"
    return [
        "",
        f"⚠️ **The test set changed since the {champion} was gated**: the candidate is also "
        "judged on the champion's test set (the criteria marked so).",
        "",
        f"| test set | {champion} | this candidate |",
        "|---|---|---|",
        f"| source | {_short(theirs['source'])} | {_short(ours['source'])} |",
        f"| sha256 | `{theirs['digest'][:12]}` | `{ours['digest'][:12]}` |",
        f"| rows | {theirs['rows']} | {ours['rows']} |",
        f"| balance | {_balance(theirs)} | {_balance(ours)} |",
    ]


def refusal_markdown(reason: str) -> str:
    """The gate's Markdown report when it refused to judge (missing, stale or edited
    inputs): no verdict on any model."""
    return (
        "<!-- mlship-gate -->\n## mlship gate: ⛔ REFUSED to judge\n\n"
        f"{reason.replace('|', '/')}\n\nNo criterion was judged: fix the inputs and run "
        "`make gate` again.\n"
    )


def _estimator(context: dict[str, Any]) -> str:
    estimator = str(context.get("estimator") or "")
    return estimator.rsplit(".", 1)[-1] or "its estimator"


SHOWN_METRICS = {
    "classification": ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}


def _metrics_beside(
    metrics: dict[str, Any], champion: dict[str, Any] | None, context: dict[str, Any]
) -> list[str]:
    """The candidate's metrics beside the trivial baseline's and the champion's, all on the
    same test rows; per-class recall where there are classes."""
    baseline = metrics.get("baseline") or {}
    task = "regression" if "rmse" in metrics else "classification"
    heads = ["this candidate"]
    if baseline:
        heads.append(f"baseline (always {baseline.get('answer')!r})")
    if champion is not None:
        heads.append(f"champion v{context.get('champion_version')}")
    lines = [
        "",
        "| metric (same test rows) | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    for key in SHOWN_METRICS[task]:
        row = [_cell(_float(metrics.get(key)))]
        if baseline:
            row.append(_cell(_float(baseline.get(key))))
        if champion is not None:
            row.append(_cell(_float(champion.get(key))))
        lines.append(f"| {key} | " + " | ".join(row) + " |")
    for label, values in (metrics.get("per_class") or {}).items():
        row = [_cell(_float(values.get("recall")))]
        if baseline:  # the constant finds every row of its class and none of the others
            row.append(_cell(1.0 if label == baseline.get("answer") else 0.0))
        if champion is not None:
            theirs = (champion.get("per_class") or {}).get(label, {})
            row.append(_cell(_float(theirs.get("recall"))))
        lines.append(f"| recall ({label}) | " + " | ".join(row) + " |")
    return [*lines, ""]


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(failed: int) -> str:
    return f"{failed} criterion" if failed == 1 else f"{failed} criteria"


def _confusion(confusion: dict[str, Any]) -> list[str]:
    labels = confusion["labels"]
    lines = [
        "",
        "<details><summary>Confusion matrix (rows: actual, columns: predicted)</summary>",
        "",
        "| actual \\ predicted | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    for label, row in zip(labels, confusion["matrix"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(n) for n in row) + " |")
    return [*lines, "", "</details>", ""]


def _errors(metrics: dict[str, Any]) -> list[str]:
    shown = ("rmse", "mae", "r2", "mape", "median_absolute_error", "max_error", "target_mean")
    return [
        "",
        "<details><summary>Errors on the test set</summary>",
        "",
        "| " + " | ".join(shown) + " |",
        "|---" * len(shown) + "|",
        "| " + " | ".join(_cell(metrics.get(k)) for k in shown) + " |",
        "",
        "</details>",
        "",
    ]


def _short(value: Any, limit: int = 60) -> str:
    text = str(value).replace("|", "/").replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def junit_case(
    name: str, classname: str, passed: bool, detail: str, failure_type: str, message: str
) -> TestCase:
    """A <testcase> whose output is `detail`; a failure (with `message`) when not passed."""
    case = TestCase(name, classname=classname, time=0.0)
    if not passed:
        case.result = [Failure(message=message, type_=failure_type)]
        case.result[0].text = detail
    case.system_out = detail
    return case


def write_junit(suite_name: str, cases: list[TestCase], path: Path) -> None:
    """One <testsuite> of `cases`, written to `path`."""
    suite = TestSuite(suite_name)
    for case in cases:
        suite.add_testcase(case)
    suite.update_statistics()  # type: ignore[no-untyped-call]
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.write(str(path), pretty=True)


def gate_junit(criteria: list[Criterion], path: Path, suite_name: str = "mlship.gate") -> None:
    """Write one <testsuite> with a <testcase> per criterion to `path`."""
    cases = [
        junit_case(
            c.name, f"{suite_name}.{c.group}", c.passed, c.detail, "GateCriterionFailed", c.detail
        )
        for c in criteria
    ]
    write_junit(suite_name, cases, path)


def params_diff(base: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    old, new = flatten(base), flatten(current)
    return [
        (key, old.get(key, "—"), new.get(key, "—"))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]
