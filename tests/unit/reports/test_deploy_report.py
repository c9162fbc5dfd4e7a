"""The deploy's HTML page and JUnit file: one entry per step, a failed step a failure that
carries its detail (a canary step's verdict and checks)."""

from __future__ import annotations

from pathlib import Path

from junitparser import Failure, JUnitXml

from mlship.reports.deploy_report import deploy_html, deploy_junit
from mlship.ship.rollout import DeployReport, Step

ABORT = (
    "abort after 6 s, 21 canary / 187 stable requests: worse: latency — errors unclear: "
    "ratio difference +0.0000 [-0.0410, +0.0410]; latency beyond: P(canary slower) 1.000 "
    "[0.861, 1.139] (tolerated 0.6)"
)


def _report() -> DeployReport:
    report = DeployReport("production", "registry/reviews:abc-m2", "2", "registry/reviews:old", "4")
    report.steps = [
        Step("canary smoke", True, "/model on each new pod (1)"),
        Step("canary 10%", False, ABORT),
        Step("all traffic to stable, canary removed", True, "100/0 <read back>"),
    ]
    report.rolled_back = True
    return report


def test_the_page_shows_each_step_and_each_check_on_its_own_line() -> None:
    page = deploy_html(_report())
    assert "mlship deploy to production: ROLLED BACK" in page
    assert "latency beyond: P(canary slower) 1.000" in page
    assert "<br>latency beyond" in page  # each check on its line
    assert "&lt;read back&gt;" in page and "<read back>" not in page


def test_the_junit_file_fails_the_aborted_step_with_its_verdict(tmp_path: Path) -> None:
    path = tmp_path / "junit" / "deploy-production.xml"
    deploy_junit(_report(), path)
    suite = next(iter(JUnitXml.fromfile(str(path))))
    cases = {case.name: case for case in suite}
    assert list(cases) == ["canary smoke", "canary 10%", "all traffic to stable, canary removed"]
    failure = cases["canary 10%"].result[0]
    assert isinstance(failure, Failure) and failure.text == ABORT
    assert not cases["canary smoke"].result and suite.failures == 1
