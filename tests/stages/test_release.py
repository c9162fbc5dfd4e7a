"""Register, promote and roll back against a throw-away sqlite MLflow store."""

from __future__ import annotations

import json

import mlflow
import pytest

from mlship.errors import CheckError, InputError
from mlship.stages.gate import gate
from mlship.stages.release import promote, register, rollback
from tests.stages.conftest import Project

GITHUB = {
    "GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "release-manager",
    "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/reviews",
    "GITHUB_RUN_ID": "7",
}  # fmt: skip


def _gated(project: Project) -> None:
    project.run_pipeline(project.params())
    gate(project.params(), project.settings, project.paths, project.dvc_file,
         project.params_file, stale=lambda _: [])  # fmt: skip


def test_register_promote_and_roll_back(project: Project) -> None:
    client = mlflow.MlflowClient(tracking_uri=project.settings.tracking_uri)
    # given two gated models, each registered and promoted
    _gated(project)
    first = register(project.settings, project.paths, project.dvc_file)
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
    second = register(project.settings, project.paths, project.dvc_file)
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


def test_register_refuses_a_failed_or_outdated_gate(project: Project) -> None:
    _gated(project)
    report = json.loads(project.paths.gate_json.read_text())
    project.paths.gate_json.write_text(json.dumps({**report, "passed": False, "failed": ["x"]}))
    with pytest.raises(CheckError, match="the gate did not pass"):
        register(project.settings, project.paths, project.dvc_file)
    project.paths.gate_json.write_text(json.dumps(report))
    (project.root / "dvc.lock").write_text("changed\n")
    with pytest.raises(InputError, match=r"stale: dvc\.lock changed"):
        register(project.settings, project.paths, project.dvc_file)


def test_promote_needs_a_candidate_that_passed_the_gate(project: Project) -> None:
    with pytest.raises(InputError, match="no @candidate"):
        promote(project.settings, {}, approver="ana")
    _gated(project)
    version = register(project.settings, project.paths, project.dvc_file)
    client = mlflow.MlflowClient(tracking_uri=project.settings.tracking_uri)
    client.set_model_version_tag("reviews", version, "mlship.gate", "failed")
    with pytest.raises(CheckError, match="has not passed the gate"):
        promote(project.settings, {}, approver="ana")
