"""A deploy's report for people and CI: an HTML page and a JUnit file, one entry per step
(a canary step's entry is its verdict, with every check's estimate and bounds)."""

from __future__ import annotations

import html
from pathlib import Path

from mlship.reports.gate_report import junit_case, write_junit
from mlship.reports.html_report import head
from mlship.ship.rollout import DeployReport


def _e(value: object) -> str:
    return html.escape(str(value))


def deploy_html(report: DeployReport) -> str:
    verdict = "deployed" if report.ok else ("ROLLED BACK" if report.rolled_back else "FAILED")
    rows = "".join(
        f"<tr><td>{'✅' if s.ok else '❌'}</td><td>{_e(s.name)}</td>"
        f"<td>{_e(s.detail).replace(' — ', '<br>').replace('; ', '<br>')}</td></tr>"
        for s in report.steps
    )
    title = f"mlship deploy to {report.environment}: {verdict}"
    return (
        head(title)
        + f"<body><h1>{_e(title)}</h1><p>Image <code>{_e(report.image)}</code>, expected "
        f"model version {_e(report.expected_version)}; before: "
        f"<code>{_e(report.previous_image)}</code> (revision "
        f"{_e(report.previous_revision)}).</p><table><tr><th></th><th>step</th>"
        f"<th>detail</th></tr>{rows}</table></body></html>\n"
    )


def deploy_junit(report: DeployReport, path: Path) -> None:
    suite_name = f"mlship.deploy.{report.environment}"
    cases = [
        junit_case(s.name, suite_name, s.ok, s.detail, "DeployStepFailed", s.detail[:500])
        for s in report.steps
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_junit(suite_name, cases, path)
