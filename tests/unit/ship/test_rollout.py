"""The deploy logic against a fake kubectl first on PATH that keeps a revision history as
Kubernetes does: success; failures after the change end on the recorded image (verified),
including a re-deploy of the running image, a hung kubectl and a failing restore; failures
before any change leave nothing to undo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlship.ship.rollout import DeployReport, Kubectl, Target, deploy, expected_version
from tests.conftest import REPO

FAKE = REPO / "tests" / "fake_kubectl"
IMAGE = "127.0.0.1:5001/mlship:0123456789ab-m7"


class Cluster:
    """The fake's state and call log, in a temporary folder."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_KUBECTL_STATE", str(folder / "state.json"))
        monkeypatch.setenv("FAKE_KUBECTL_LOG", str(folder / "calls.log"))

    def deploy(self, scenario: str, image: str = IMAGE, timeout: float = 120) -> DeployReport:
        self.monkeypatch.setenv("FAKE_KUBECTL_SCENARIO", scenario)
        target = Target("mlship-staging")
        kubectl = Kubectl(target.namespace, timeout=timeout)
        return deploy(kubectl, target, "staging", image, "7", {"review": "ok"}, 30)

    def running(self, image: str) -> None:
        """Start from a cluster that runs `image` (after the initial "old")."""
        state = {"revisions": ["old", image], "canary": None, "weights": [], "healthy": [image]}
        (self.folder / "state.json").write_text(json.dumps(state))

    @property
    def calls(self) -> list[list[str]]:
        lines = (self.folder / "calls.log").read_text().splitlines()
        return [json.loads(line)[2:] for line in lines]  # without --namespace <ns>

    @property
    def revisions(self) -> list[str]:
        state = self.folder / "state.json"
        return list(json.loads(state.read_text())["revisions"]) if state.exists() else ["old"]

    @property
    def image(self) -> str:
        return self.revisions[-1]


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    return Cluster(tmp_path, monkeypatch)


def test_a_good_rollout_records_what_ran_and_is_smoke_tested(cluster: Cluster) -> None:
    report = cluster.deploy("ok")
    assert report.ok and not report.rolled_back
    assert (report.previous_image, report.previous_revision) == ("old", "1")
    assert [call[:2] for call in cluster.calls] == [
        ["get", "deployment/mlship"],
        ["set", "image"],
        ["rollout", "status"],
        ["run", cluster.calls[3][1]],
    ]
    assert cluster.calls[1] == ["set", "image", "deployment/mlship", f"server={IMAGE}"]
    assert "--timeout=30s" in cluster.calls[2]
    assert f"--image={IMAGE}" in cluster.calls[3]
    assert cluster.image == IMAGE
    assert "version 7" in report.steps[-1].detail


@pytest.mark.parametrize(
    ("scenario", "failed_step"),
    [("rollout-timeout", "rollout status"), ("smoke-fails", "smoke"), ("wrong-version", "smoke")],
)
def test_failures_after_the_change_end_on_the_recorded_image(
    cluster: Cluster, scenario: str, failed_step: str
) -> None:
    report = cluster.deploy(scenario)
    assert not report.ok and report.rolled_back
    # the recorded image is set back (not "one revision back"), then verified
    assert ["set", "image", "deployment/mlship", "server=old"] in cluster.calls
    assert cluster.image == "old"
    assert [s.name for s in report.steps if not s.ok] == [failed_step]
    assert (
        report.steps[-1].name == "verify recorded image"
        and "running old" in report.steps[-1].detail
    )
    assert "ROLLED BACK" in report.markdown()


def test_redeploying_the_running_image_never_goes_a_revision_further_back(
    cluster: Cluster,
) -> None:
    # given a cluster that already runs IMAGE, over an older revision
    cluster.running(IMAGE)
    # when IMAGE is deployed again and its smoke test fails (no new revision was made)
    report = cluster.deploy("smoke-fails")
    # then it stays on IMAGE: undo would have silently gone back to "old"
    assert cluster.image == IMAGE and cluster.revisions == ["old", IMAGE]
    assert not report.ok and report.rolled_back and report.previous_image == IMAGE
    assert not any(call[:2] == ["rollout", "undo"] for call in cluster.calls)


def test_a_hung_kubectl_after_set_image_is_cut_off_and_undone(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_HANG_AT", "2")  # get, then set image applies and hangs
    report = cluster.deploy("ok", timeout=2)
    assert not report.ok and report.rolled_back and cluster.image == "old"
    assert "timed out" in next(s.detail for s in report.steps if not s.ok)


def test_a_wrong_version_names_both(cluster: Cluster) -> None:
    report = cluster.deploy("wrong-version")
    assert "serves version 1, expected 7" in report.steps[2].detail


def test_the_smoke_test_accepts_a_regression_models_answer(cluster: Cluster) -> None:
    report = cluster.deploy("regression")
    assert report.ok and "/predict -> 251000.5" in report.steps[-1].detail


def test_a_failed_set_image_is_checked_and_changes_nothing(cluster: Cluster) -> None:
    report = cluster.deploy("set-fails")
    assert not report.ok and report.rolled_back  # verified: still on the recorded image
    assert cluster.image == "old" and "not found" in report.steps[0].detail


def test_a_restore_that_fails_is_reported_as_such(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # get, set image, rollout status (fails), get, then the restoring set image fails
    monkeypatch.setenv("FAKE_KUBECTL_FAIL_AT", "5")
    report = cluster.deploy("rollout-timeout")
    assert not report.ok and not report.rolled_back and cluster.image == IMAGE
    assert report.steps[-1].name == "restore recorded image" and not report.steps[-1].ok
    assert "FAILED" in report.markdown()


def test_an_unreachable_cluster_changes_nothing(cluster: Cluster) -> None:
    report = cluster.deploy("unreachable")
    assert not report.ok and not report.rolled_back and report.previous_image is None
    assert [s.name for s in report.steps] == ["read deployment"]


def test_versions_come_from_image_tags() -> None:
    assert expected_version(IMAGE) == "7"
    assert expected_version("r/mlship:abcdef123456-mlocal") == "local"
    assert expected_version("r/mlship:latest") is None


def test_the_cli_records_the_deployed_image_on_the_model_version(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from typer.testing import CliRunner

    from mlship.cli import app
    from tests.conftest import text_frame, write_dvc_file

    # given a registered version 1 and the files a deploy reads
    folder = cluster.folder
    store = f"sqlite:///{folder}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=store)
    client.create_registered_model("reviews")
    client.create_model_version("reviews", str(folder))
    model = folder / "model"
    model.mkdir()
    (model / "model_card.json").write_text('{"features": {"text": ["review"]}, "target": "s"}')
    text_frame(2).to_parquet(folder / "test.parquet")
    write_dvc_file(folder, model_dir=model, test=folder / "test.parquet")
    monkeypatch.setenv("MLSHIP_TRACKING_URI", store)
    monkeypatch.setenv("MLSHIP_MODEL_NAME", "reviews")
    monkeypatch.setenv("FAKE_KUBECTL_SCENARIO", "ok")
    image = "127.0.0.1:5001/mlship:0123456789ab-m1"
    # when deployed
    result = CliRunner().invoke(
        app,
        ["deploy", "--env", "staging", "--image", image, "--dvc-file", str(folder / "dvc.yaml")],
    )
    # then the version records where it runs, and the report says deployed
    assert result.exit_code == 0, result.stderr
    tags = client.get_model_version("reviews", "1").tags
    assert tags["mlship.deployed.staging"] == image
    report = json.loads((folder / "reports/deploy-staging.json").read_text())
    assert report["ok"] and report["image"] == image
    # when the rollout fails / then exit 1 and the report says it was rolled back
    cluster.monkeypatch.setenv("FAKE_KUBECTL_SCENARIO", "rollout-timeout")
    second = image.replace("-m1", "-m2")
    failed = CliRunner().invoke(
        app,
        ["deploy", "--env", "staging", "--image", second, "--dvc-file", str(folder / "dvc.yaml")],
    )
    assert failed.exit_code == 1 and f"rolled back: verified on {image}" in failed.stderr
    # when the cluster does not answer / then exit 3, nothing changed
    cluster.monkeypatch.setenv("FAKE_KUBECTL_SCENARIO", "unreachable")
    down = CliRunner().invoke(
        app,
        ["deploy", "--env", "staging", "--image", second, "--dvc-file", str(folder / "dvc.yaml")],
    )
    assert down.exit_code == 3 and "the cluster did not answer" in down.stderr
