"""GitHub Actions, Jenkins and Cloud Build run exactly src/mlship/ship/delivery.py's stages, in
order, each as its one command; and the comparison itself catches a drifted file."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from mlship.ship.ci import cloudbuild, github, jenkins
from mlship.ship.ci.system import PipelineError, Steps
from mlship.ship.delivery import (
    STEPS,
    Step,
    after_approval,
    before_approval,
    pull_request_steps,
    scheduled_steps,
)
from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
CLOUDBUILD = REPO / ".ci" / "cloudbuild"


def expected(stages: tuple[Step, ...]) -> Steps:
    return [(s.name, s.command) for s in stages]


def test_the_stage_list_is_the_issue_order_with_one_approval() -> None:
    names = [s.name for s in STEPS]
    assert names == [
        "test",
        "train",
        "gate",
        "register",
        "build",
        "push",
        "loadtest",
        "deploy-staging",
        "approve",
        "deploy-production",
        "promote",
    ]
    assert [s.name for s in STEPS if s.command is None] == ["approve"]
    # every command is one make target the Makefile declares
    makefile = (REPO / "Makefile").read_text()
    for stage in STEPS:
        if stage.command:
            target = stage.command.split()[1]
            assert f"\n{target}:" in makefile, f"{stage.name}: no `{target}` target"


def test_github_pull_requests_run_the_stages_up_to_the_gate() -> None:
    assert github.read_workflow_steps(WORKFLOWS / "ci.yml") == expected(pull_request_steps())


def test_github_main_runs_every_stage_with_the_approval_on_the_production_job() -> None:
    assert github.read_workflow_steps(WORKFLOWS / "cd.yml") == expected(STEPS)


def test_jenkins_runs_every_stage_and_pull_requests_stop_after_the_gate() -> None:
    assert jenkins.read_jenkins_steps(REPO / "Jenkinsfile") == expected(STEPS)
    root = jenkins.groovy_blocks(
        jenkins.groovy_leaves((REPO / "Jenkinsfile").read_text(encoding="utf-8"))
    )
    # a stage that pull requests skip says so with `when { branch 'main' }`, on itself or
    # on the group stage around it
    leaves = jenkins.jenkins_leaf_stages(root)
    main_only = set()
    for stage in root.find("stage"):
        whens = [c for c in stage.children if jenkins.call_name(c) == "when"]
        if any(jenkins.strings(w.tokens()) == ["main"] for w in whens):
            main_only |= {jenkins.jenkins_stage_name(s) for s in stage.find("stage") if s in leaves}
    assert main_only == {s.name for s in STEPS if not s.on_pull_request}


def test_cloud_build_main_runs_up_to_the_approval_then_production_runs_the_rest() -> None:
    approve = [(s.name, s.command) for s in STEPS if s.name == "approve"]
    assert cloudbuild.read_build_steps(REPO / "cloudbuild.yaml") == (
        expected(before_approval()) + approve
    )
    assert cloudbuild.read_build_steps(CLOUDBUILD / "production.yaml") == expected(after_approval())
    assert cloudbuild.read_build_steps(CLOUDBUILD / "pull-request.yaml") == expected(
        pull_request_steps()
    )


def test_cloud_build_approval_runs_the_trigger_that_requires_approval() -> None:
    config = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    step = next(s for s in config["steps"] if s["id"] == "approve")
    assert step["entrypoint"] == ".venv/bin/mlship"
    assert step["args"][:4] == ["cloudbuild", "submit", "--trigger", "$_PRODUCTION_TRIGGER"]
    trigger_name = config["substitutions"]["_PRODUCTION_TRIGGER"]
    triggers = {
        path.name: yaml.safe_load(path.read_text()) for path in (CLOUDBUILD / "triggers").glob("*")
    }
    production = next(t for t in triggers.values() if t["name"] == trigger_name)
    assert production["approvalConfig"] == {"approvalRequired": True}
    assert production["gitFileSource"]["path"] == ".ci/cloudbuild/production.yaml"
    # the others need no approval and build the configs the tests above read
    assert triggers["main.yaml"]["filename"] == "cloudbuild.yaml"
    assert triggers["main.yaml"]["github"]["push"]["branch"] == "^main$"
    assert triggers["pull-request.yaml"]["filename"] == ".ci/cloudbuild/pull-request.yaml"
    assert "pullRequest" in triggers["pull-request.yaml"]["github"]
    assert all("approvalConfig" not in triggers[n] for n in ("main.yaml", "pull-request.yaml"))


# --- the scheduled path: monitor, then (when due) the whole delivery --------------------------


def test_the_scheduled_path_is_monitor_then_the_delivery_in_every_ci() -> None:
    scheduled = expected(scheduled_steps())
    assert scheduled == [("monitor", "make monitor"), ("retrain", None)]
    assert github.read_workflow_steps(WORKFLOWS / "ct.yml") == scheduled
    assert jenkins.read_jenkins_steps(REPO / ".ci" / "jenkins" / "ct.Jenkinsfile") == scheduled
    assert cloudbuild.read_build_steps(CLOUDBUILD / "ct.yaml") == scheduled


def test_github_retrains_through_the_delivery_workflow_when_monitor_says_so() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "ct.yml").read_text())
    assert workflow[True]["schedule"][0]["cron"]  # `on:` reads as True in YAML 1.1
    retrain = workflow["jobs"]["retrain"]
    assert retrain["uses"] == "./.github/workflows/cd.yml"
    assert retrain["if"] == "needs.monitor.outputs.retrain == 'true'"
    assert "workflow_call" in yaml.safe_load((WORKFLOWS / "cd.yml").read_text())[True]
    monitor = {s.get("id"): s for s in workflow["jobs"]["monitor"]["steps"]}
    assert monitor["monitor"]["continue-on-error"] is True
    assert "reports/monitor/monitor.json" in monitor["decision"]["run"]


def test_jenkins_runs_monitor_on_a_timer_and_starts_the_delivery_job() -> None:
    source = (REPO / ".ci" / "jenkins" / "ct.Jenkinsfile").read_text()
    root = jenkins.groovy_blocks(jenkins.groovy_leaves(source))
    assert root.find("triggers") and "cron" in [w for _, w in root.find("triggers")[0].tokens()]
    retrain = next(s for s in root.find("stage") if jenkins.jenkins_stage_name(s) == "retrain")
    assert "RETRAIN" in jenkins.strings(retrain.tokens())
    assert "DELIVERY_JOB" in [w for _, w in retrain.tokens()]


def test_cloud_scheduler_runs_the_ct_trigger_which_starts_the_main_trigger() -> None:
    ct = yaml.safe_load((CLOUDBUILD / "ct.yaml").read_text())
    steps = {s["id"]: s for s in ct["steps"]}
    assert steps["monitor"]["allowExitCodes"] == [0, 1]
    assert "cloudbuild submit --trigger $_MAIN_TRIGGER" in steps["retrain"]["args"][-1]
    main = yaml.safe_load((CLOUDBUILD / "triggers" / "main.yaml").read_text())
    assert ct["substitutions"]["_MAIN_TRIGGER"] == main["name"]
    trigger = yaml.safe_load((CLOUDBUILD / "triggers" / "ct.yaml").read_text())
    assert trigger["gitFileSource"]["path"] == ".ci/cloudbuild/ct.yaml"
    job = yaml.safe_load((CLOUDBUILD / "scheduler" / "ct.yaml").read_text())
    assert job["httpTarget"]["uri"].endswith(f"/triggers/{trigger['name']}:run")
    assert job["httpTarget"]["httpMethod"] == "POST"
    assert len(job["schedule"].split()) == 5


# --- the comparison fails on drift ------------------------------------------------------------


def _mutated_workflow(tmp_path: Path, change: str) -> Path:
    workflow = yaml.safe_load((WORKFLOWS / "cd.yml").read_text())
    steps = workflow["jobs"]["delivery"]["steps"]
    ids = [s.get("id") for s in steps]
    if change == "missing":
        del steps[ids.index("loadtest")]
    elif change == "reordered":
        i, j = ids.index("build"), ids.index("push")
        steps[i], steps[j] = steps[j], steps[i]
    elif change == "extra":
        steps.insert(ids.index("gate") + 1, {"id": "gate-again", "run": "make gate"})
    elif change == "renamed-command":
        steps[ids.index("register")]["run"] = "make register-all"
    elif change == "no-approval":
        del workflow["jobs"]["production"]["environment"]
    path = tmp_path / "cd.yml"
    path.write_text(yaml.safe_dump(workflow))
    return path


@pytest.mark.parametrize(
    "change", ["missing", "reordered", "extra", "renamed-command", "no-approval"]
)
def test_a_drifted_workflow_is_caught(tmp_path: Path, change: str) -> None:
    path = _mutated_workflow(tmp_path, change)
    try:
        found = github.read_workflow_steps(path)
    except PipelineError:
        return  # a stray `make` outside a stage is caught while reading
    assert found != expected(STEPS)


def test_a_drifted_jenkinsfile_is_caught(tmp_path: Path) -> None:
    source = (REPO / "Jenkinsfile").read_text(encoding="utf-8")
    swapped = (
        source.replace("sh 'make image'", "sh 'make TMP'")
        .replace("sh 'make push'", "sh 'make image'")
        .replace("sh 'make TMP'", "sh 'make push'")
    )
    path = tmp_path / "Jenkinsfile"
    path.write_text(swapped)
    assert jenkins.read_jenkins_steps(path) != expected(STEPS)


def test_a_cloud_build_step_running_make_outside_a_stage_is_caught(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "cloudbuild.yaml").read_text())
    stray = {"id": "warm-up", "name": "x", "entrypoint": "make", "args": ["gate"]}
    config["steps"].insert(1, stray)
    path = tmp_path / "cloudbuild.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(PipelineError, match="outside a named step"):
        cloudbuild.read_build_steps(path)


def test_the_docs_stage_table_is_the_stage_list() -> None:
    lines = (REPO / "docs" / "ci" / "index.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| stage"))
    table = itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2 :])
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table]
    documented = [(row[0], row[1].strip("`") if row[1].startswith("`") else None) for row in rows]
    assert documented == expected(STEPS)
    pull_requests = [row[0] for row in rows if row[2] == "yes"]
    assert pull_requests == [s.name for s in pull_request_steps()]
