"""The alert rules evaluated by Prometheus's own engine (promtool), not read as text."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO
from tests.tools import tool

RULES = REPO / "k8s" / "base" / "rules.yaml"
UNIT_TESTS = Path(__file__).with_name("rules.test.yaml")


def _promtool_folder(folder: Path, groups: dict[str, Any]) -> Path:
    """The Rules resource's groups as a plain rule file beside a copy of the unit tests."""
    (folder / "rules.yaml").write_text(yaml.safe_dump(groups))
    shutil.copy(UNIT_TESTS, folder / UNIT_TESTS.name)
    return folder / UNIT_TESTS.name


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_the_rules_load_and_every_alert_fires_and_stays_quiet_as_tested(tmp_path: Path) -> None:
    groups = yaml.safe_load(RULES.read_text())["spec"]
    tests = _promtool_folder(tmp_path, groups)
    checked = _promtool("check", "rules", tmp_path / "rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr

    alerts = {rule["alert"] for group in groups["groups"] for rule in group["rules"]}
    cases = [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    assert {case["alertname"] for case in cases if case["exp_alerts"]} == alerts  # each fires
    assert {case["alertname"] for case in cases if not case["exp_alerts"]} == alerts  # and not


def test_the_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The promtool tests fail when a threshold moves: they measure the rules."""
    groups = yaml.safe_load(RULES.read_text())["spec"]
    for rule in groups["groups"][0]["rules"]:
        rule["expr"] = rule["expr"].replace("> 0.25", "> 0.5").replace("< 0.68", "< 0.5")
    tested = _promtool("test", "rules", _promtool_folder(tmp_path, groups))
    assert tested.returncode != 0
    failures = tested.stdout + tested.stderr
    assert "MlshipHighP99Latency" in failures and "MlshipLiveAccuracyLow" in failures
