"""Register, promote and roll back against a throw-away sqlite MLflow store."""

from __future__ import annotations

import json

import mlflow
import pytest

from mlship.errors import CheckError, InputError
from mlship.stages.gate import gate
from mlship.stages.release import promote, register, rollback
from tests.conftest import Project

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_ACTOR": "release-manager",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/reviews",
    "GITHUB_RUN_ID": "7",
}


def _gated(project: Project) -> None:
    project.run_pipeline(project.params())
    gate(project.stage_inputs(project.params()), stale=lambda _: [])


def test_register_promote_and_roll_back(project: Project) -> None:
    client = mlflow.MlflowClient(tracking_uri=project.settings.tracking_uri)
    # given two gated models, each registered and promoted
    _gated(project)
    first = register(project.stage_inputs()).version
    assert str(client.get_model_version_by_alias("reviews", "candidate").version) == first
    promoted = promote(project.settings, GITHUB)
    assert (promoted.version, promoted.previous) == (first, None)
    tags = client.get_model_version("reviews", first).tags
    assert tags["mlship.approved_by"] == "release-manager"
    assert tags["mlship.approved_url"].endswith("/acme/reviews/actions/runs/7")
    assert tags["mlship.gate"] == "passed" and tags["mlship.gate_champion"] == "none"
    with pytest.raises(InputError, match="already @champion"):
        promote(project.settings, GITHUB)
    _gated(project)
    second = register(project.stage_inputs()).version
    assert promote(project.settings, {}, approver="bob").previous == first
    # when rolled back / then the first is champion again and the rollback is recorded
    back = rollback(project.settings, {}, approver="carol")
    assert (back.version, back.previous) == (first, second)
    assert str(client.get_model_version_by_alias("reviews", "champion").version) == first
    tags = client.get_model_version("reviews", first).tags
    assert tags["mlship.rolled_back_by"] == "carol"
    assert tags["mlship.rolled_back_from"] == second
    # and there is nothing further back
    with pytest.raises(InputError, match="no previous champion"):
        rollback(project.settings, {}, approver="carol")


def test_register_refuses_a_failed_edited_or_outdated_gate(project: Project) -> None:
    # given a gate that failed (thresholds no model meets)
    project.run_pipeline(project.params())
    strict = project.params(gate={"min_accuracy": 1.0, "max_log_loss": 1e-9})
    assert not gate(project.stage_inputs(strict), stale=lambda _: []).passed
    report = json.loads(project.paths.gate_json.read_text())
    with pytest.raises(CheckError, match="the gate did not pass"):
        register(project.stage_inputs())
    # when its report is edited into a pass / then register sees it is not the gate's record
    forged = {
        **report,
        "passed": True,
        "failed": [],
        "criteria": [{**c, "passed": True} for c in report["criteria"]],
    }
    project.paths.gate_json.write_text(json.dumps(forged))
    with pytest.raises(CheckError, match="not the passing report the gate recorded"):
        register(project.stage_inputs())
    # and a report of a pass is refused once dvc.lock changed
    _gated(project)
    (project.root / "dvc.lock").write_text("changed\n")
    with pytest.raises(InputError, match=r"stale: dvc\.lock changed"):
        register(project.stage_inputs())


def test_promote_needs_the_gate_record_not_just_a_tag(project: Project) -> None:
    with pytest.raises(InputError, match="no @candidate"):
        promote(project.settings, {}, approver="ana")
    # given a model version registered past the gate and tagged as if it had passed
    project.run_pipeline(project.params())
    card = json.loads((project.paths.model_dir / "model_card.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=project.settings.tracking_uri)
    mlflow.set_tracking_uri(project.settings.tracking_uri)
    version = mlflow.register_model(card["mlflow"]["model_uri"], "reviews").version
    client.set_model_version_tag("reviews", version, "mlship.gate", "passed")
    client.set_registered_model_alias("reviews", "candidate", version)
    # when promoted / then refused: its run carries no passing gate record
    with pytest.raises(CheckError, match="no passing gate record"):
        promote(project.settings, {}, approver="ana")


def test_a_later_failing_gate_on_the_same_run_leaves_the_registered_verdict(
    project: Project,
) -> None:
    # given a gated, registered version
    _gated(project)
    version = register(project.stage_inputs()).version
    # when the gate runs again on the same run and fails (thresholds no model meets)
    strict = project.params(gate={"min_accuracy": 1.0, "max_log_loss": 1e-9})
    assert not gate(project.stage_inputs(strict), stale=lambda _: []).passed
    # then both verdicts are kept on the run, and the version still promotes on its own
    run = mlflow.MlflowClient(project.settings.tracking_uri).get_run(
        json.loads(project.paths.gate_json.read_text())["candidate_run_id"]
    )
    verdicts = sorted(v for k, v in run.data.tags.items() if k.startswith("mlship.gate.verdict."))
    assert verdicts == ["failed", "passed"]
    assert promote(project.settings, {}, approver="ana").version == version
