"""`mlship drift`'s reports: JSON for machines, Markdown for a pull request or a CI summary,
JUnit for Jenkins, and an HTML page with each column's distributions side by side."""

from __future__ import annotations

import html
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlship import files
from mlship.gate.criteria import Criterion
from mlship.monitor.drift import Check, DriftReport
from mlship.reports import plots
from mlship.reports.gate_report import gate_junit
from mlship.reports.html_report import head


def drift_json(report: DriftReport, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "drift": bool(report.drifted),
        "judged": report.judged,
        "drifted": [check.column for check in report.drifted],
        "reference_rows": report.reference_rows,
        "current_rows": report.current_rows,
        "alpha_per_check": report.alpha,
        "checks": [asdict(check) for check in report.checks],
        **context,
    }


def _headline(report: DriftReport) -> str:
    if report.drifted:
        return f"DRIFT in {len(report.drifted)} of {len(report.checks)} checks"
    if not report.judged:
        return "NO VERDICT: too few current rows"
    return "no drift"


def _statistic(check: Check) -> str:
    return f"KS {check.value:.3f}" if check.statistic == "ks" else f"χ² {check.value:.1f}"


def drift_markdown(report: DriftReport) -> str:
    lines = [
        f"## mlship drift: {_headline(report)}",
        "",
        f"{report.current_rows} current rows against a reference of {report.reference_rows}; "
        f"a check drifts when p < {report.alpha:.2g} (alpha shared among the checks) and its "
        "effect reaches the limit.",
        "",
        "| verdict | column | statistic | p-value | PSI | effect / limit | rows |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.verdict} | {c.column} | {_statistic(c)} | {c.p_value:.3g} | {c.psi:.3f} "
        f"| {c.effect:.3f} / {c.limit:g} | {c.rows} |"
        for c in report.checks
    ]
    return "\n".join(lines) + "\n"


def _detail(check: Check) -> str:
    return (
        f"{check.verdict}: {_statistic(check)}, p = {check.p_value:.3g}, PSI "
        f"{check.psi:.3f}; effect {check.effect:.3f} against a limit of {check.limit:g} "
        f"on {check.rows} rows"
    )


def drift_junit(report: DriftReport, path: Path) -> None:
    criteria = [
        Criterion("drift", c.column, not c.drifted, _detail(c), c.effect, c.limit)
        for c in report.checks
    ]
    gate_junit(criteria, path, suite_name="mlship.monitor.drift")


def drift_html(report: DriftReport, title: str) -> str:
    e = html.escape
    kind = "fail" if report.drifted else ("none" if not report.judged else "pass")
    rows = "".join(
        f"<tr><td class={'bad' if c.drifted else 'ok'}>{e(c.verdict)}</td><td>{e(c.column)}"
        f"</td><td class=num>{e(_statistic(c))}</td><td class=num>{c.p_value:.3g}</td>"
        f"<td class=num>{c.psi:.3f}</td><td class=num>{c.effect:.3f} / {c.limit:g}</td>"
        f"<td class=num>{c.rows}</td></tr>"
        for c in report.checks
    )
    drawn = "".join(
        f"<div class=plot>{plots.shares(f'{c.column} ({c.verdict})', c.reference, c.current)}</div>"
        for c in report.checks
        if c.reference
    )
    return (
        f"{head(title)}<body><h1>{e(title)} "
        f"<span class='verdict {kind}'>{e(_headline(report))}</span></h1>"
        f"<p class=muted>{report.current_rows} current rows against a reference of "
        f"{report.reference_rows}. A check drifts only when the shift is significant (p under "
        f"{report.alpha:.2g}, the alpha shared among the checks: small samples cannot raise "
        "it by chance) and large (KS statistic or PSI at its limit: huge samples cannot "
        "raise it for a trivial shift).</p>"
        "<h2>Checks</h2><table><tr><th>verdict</th><th>column</th><th>statistic</th>"
        f"<th>p-value</th><th>PSI</th><th>effect / limit</th><th>rows</th></tr>{rows}</table>"
        f"<h2>Distributions</h2><div class=plots>{drawn}</div></body></html>\n"
    )


def write_reports(report: DriftReport, out: Path, context: dict[str, Any]) -> list[Path]:
    """drift.json, drift.md, drift.html and junit/drift.xml under `out`."""
    written = [
        out / "drift.json",
        out / "drift.md",
        out / "drift.html",
        out / "junit" / "drift.xml",
    ]
    files.write_json(written[0], drift_json(report, context))
    files.write_text(written[1], drift_markdown(report))
    files.write_text(written[2], drift_html(report, "mlship drift report"))
    written[3].parent.mkdir(parents=True, exist_ok=True)
    drift_junit(report, written[3])
    return written
