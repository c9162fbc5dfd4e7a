"""Gate, register, promote and roll back against a real MLflow store, on the penguins data."""

from __future__ import annotations

import json

import mlflow
import pytest
import yaml
from junitparser import JUnitXml

from tests.integration.conftest import BIN, Workspace

pytestmark = pytest.mark.integration

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_ACTOR": "release-manager",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/penguins",
    "GITHUB_RUN_ID": "7",
}


def _mlship(space: Workspace, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    saved = dict(space.env)
    space.env.update(env or {})
    try:
        done = space.run(str(BIN / "mlship"), *args)
    finally:
        space.env.clear()
        space.env.update(saved)
    return done.returncode, done.stdout + done.stderr


def _edit_params(space: Workspace, **train_model: object) -> None:
    path = space.root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train"]["model"].update(train_model)
    params["gate"].update({"min_accuracy": 0.3, "min_macro_f1": 0.2})
    params["gate"].pop("min_class_recall", None)
    params["gate"].pop("max_log_loss", None)
    path.write_text(yaml.safe_dump(params))


def test_gate_register_promote_and_rollback(workspace: Workspace) -> None:
    workspace.use_example("penguins")
    mlflow.set_tracking_uri(f"sqlite:///{workspace.root}/mlruns/mlflow.db")
    client = mlflow.MlflowClient()

    # given a fresh pipeline and no champion / when gated / then it passes on thresholds
    workspace.repro()
    code, output = _mlship(workspace, "gate")
    assert code == 0, output
    report = json.loads((workspace.root / "reports/gate.json").read_text())
    assert report["passed"] and report["champion_version"] is None
    assert (workspace.root / "reports/gate.md").read_text().count("✅") >= 6
    suite = next(iter(JUnitXml.fromfile(str(workspace.root / "reports/junit/gate.xml"))))
    assert suite.tests == len(report["criteria"]) and suite.failures == 0

    # when registered and promoted from a GitHub Actions run
    assert _mlship(workspace, "register")[0] == 0
    first = client.get_model_version_by_alias("penguins", "candidate")
    assert first.tags["mlship.gate"] == "passed"
    assert first.tags["mlship.dvc_lock_sha256"] == report["dvc_lock_sha256"]
    code, output = _mlship(workspace, "promote", env=GITHUB)
    assert code == 0, output
    champion = client.get_model_version_by_alias("penguins", "champion")
    assert champion.version == first.version
    assert champion.tags["mlship.approved_by"] == "release-manager"
    assert champion.tags["mlship.approved_via"] == "github-actions"
    assert champion.tags["mlship.approved_url"].endswith("/acme/penguins/actions/runs/7")

    # given params changed but not reproduced / when gated / then stale: exit 2
    _edit_params(workspace, max_iter=1, learning_rate=0.01, max_leaf_nodes=2)
    code, output = _mlship(workspace, "gate")
    assert code == 2 and "stale" in output, output

    # given a much weaker challenger that clears the (lowered) thresholds
    workspace.repro()
    code, output = _mlship(workspace, "gate")
    # then the paired comparison with the champion fails it: exit 1, and no registration
    assert code == 1, output
    report = json.loads((workspace.root / "reports/gate.json").read_text())
    assert report["champion_version"] == str(first.version)
    # (so much weaker that it no longer beats always answering the majority class either)
    assert report["failed"] == [
        "accuracy beats the trivial baseline by > 0.0",
        "accuracy non-inferior (margin 0.02) to champion",
        "macro_f1 non-inferior (margin 0.02) to champion",
    ]
    failed = {c["name"]: c for c in report["criteria"] if not c["passed"]}
    paired = failed["accuracy non-inferior (margin 0.02) to champion"]
    assert paired["interval"][1] < -0.02 and paired["p_value"] < 0.05
    assert _mlship(workspace, "register")[0] == 1

    # given a challenger as good as the champion / then it passes, registers and is promoted
    _edit_params(
        workspace, max_iter=200, learning_rate=0.1, max_leaf_nodes=15, l2_regularization=0.5
    )
    workspace.repro()
    code, output = _mlship(workspace, "gate")
    assert code == 0, output
    assert _mlship(workspace, "register")[0] == 0
    assert _mlship(workspace, "promote", "--approver", "bob")[0] == 0
    second = client.get_model_version_by_alias("penguins", "champion")
    assert second.version != first.version
    assert second.tags["mlship.previous_champion"] == str(first.version)
    assert second.tags["mlship.approved_by"] == "bob"

    # when rolled back / then the first version is champion again, and the rollback is recorded
    code, output = _mlship(workspace, "promote", "--rollback", "--approver", "carol")
    assert code == 0, output
    back = client.get_model_version_by_alias("penguins", "champion")
    assert back.version == first.version
    assert back.tags["mlship.rolled_back_by"] == "carol"
    assert back.tags["mlship.rolled_back_from"] == str(second.version)
    # and there is nothing further back
    code, output = _mlship(workspace, "promote", "--rollback")
    assert code == 2 and "no previous champion" in output

    # given a missing evaluation output / when gated / then it refuses with exit 2
    (workspace.root / "metrics/evaluate.json").unlink()
    code, output = _mlship(workspace, "gate")
    assert code == 2 and "stale" in output and "evaluate" in output
