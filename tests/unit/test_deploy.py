"""The deploy logic against a fake kubectl first on PATH: success, rollout timeout -> undo,
smoke failure -> undo, a wrong model version -> undo, and failures that leave nothing to undo
or cannot be undone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlship.rollout import DeployReport, Kubectl, Target, deploy, expected_version

FAKE = Path(__file__).resolve().parents[1] / "fake_kubectl"
IMAGE = "127.0.0.1:5001/mlship:0123456789ab-m7"


class Cluster:
    """The fake's state and call log, in a temporary folder."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_KUBECTL_STATE", str(folder / "state.json"))
        monkeypatch.setenv("FAKE_KUBECTL_LOG", str(folder / "calls.log"))

    def deploy(self, scenario: str) -> DeployReport:
        self.monkeypatch.setenv("FAKE_KUBECTL_SCENARIO", scenario)
        target = Target("mlship-staging")
        return deploy(
            Kubectl(target.namespace), target, "staging", IMAGE, "7", {"review": "ok"}, 30
        )

    @property
    def calls(self) -> list[list[str]]:
        lines = (self.folder / "calls.log").read_text().splitlines()
        return [json.loads(line)[2:] for line in lines]  # without --namespace <ns>

    @property
    def image(self) -> str:
        state = self.folder / "state.json"
        return str(json.loads(state.read_text())["image"]) if state.exists() else "old"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    return Cluster(tmp_path, monkeypatch)


def test_a_good_rollout_is_smoke_tested_and_kept(cluster: Cluster) -> None:
    report = cluster.deploy("ok")
    assert report.ok and not report.rolled_back
    assert [call[:2] for call in cluster.calls] == [
        ["set", "image"], ["rollout", "status"], ["run", cluster.calls[2][1]]
    ]  # fmt: skip
    assert cluster.calls[0] == ["set", "image", "deployment/mlship", f"server={IMAGE}"]
    assert "--timeout=30s" in cluster.calls[1]
    assert f"--image={IMAGE}" in cluster.calls[2]
    assert cluster.image == IMAGE
    assert "version 7" in report.steps[-1].detail


@pytest.mark.parametrize(
    ("scenario", "failed_step"),
    [("rollout-timeout", "rollout status"), ("smoke-fails", "smoke"), ("wrong-version", "smoke")],
)
def test_failures_after_the_change_are_undone(
    cluster: Cluster, scenario: str, failed_step: str
) -> None:
    report = cluster.deploy(scenario)
    assert not report.ok and report.rolled_back
    assert cluster.calls[-2] == ["rollout", "undo", "deployment/mlship"]
    assert cluster.image == "old"  # the previous image serves again
    assert [s.name for s in report.steps if not s.ok] == [failed_step]
    assert "ROLLED BACK" in report.markdown()


def test_the_smoke_test_accepts_a_regression_models_answer(cluster: Cluster) -> None:
    report = cluster.deploy("regression")
    assert report.ok and "/predict -> 251000.5" in report.steps[-1].detail


def test_a_wrong_version_names_both(cluster: Cluster) -> None:
    report = cluster.deploy("wrong-version")
    assert "serves version 1, expected 7" in report.steps[2].detail


def test_a_failed_set_image_changes_nothing(cluster: Cluster) -> None:
    report = cluster.deploy("set-fails")
    assert not report.ok and not report.rolled_back
    assert len(cluster.calls) == 1 and cluster.image == "old"
    assert "not found" in report.steps[0].detail


def test_an_undo_that_fails_is_reported_as_such(cluster: Cluster) -> None:
    report = cluster.deploy("smoke-fails,undo-fails")
    assert not report.ok and not report.rolled_back
    assert report.steps[-1].name == "rollout undo" and not report.steps[-1].ok
    assert "FAILED" in report.markdown()


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
    result = CliRunner().invoke(app, ["deploy", "--env", "staging", "--image", image,
                                      "--dvc-file", str(folder / "dvc.yaml")])  # fmt: skip
    # then the version records where it runs, and the report says deployed
    assert result.exit_code == 0, result.stderr
    tags = client.get_model_version("reviews", "1").tags
    assert tags["mlship.deployed.staging"] == image
    report = json.loads((folder / "reports/deploy-staging.json").read_text())
    assert report["ok"] and report["image"] == image
    # when the rollout fails / then exit 1 and the report says it was rolled back
    cluster.monkeypatch.setenv("FAKE_KUBECTL_SCENARIO", "rollout-timeout")
    second = image.replace("-m1", "-m2")
    failed = CliRunner().invoke(app, ["deploy", "--env", "staging", "--image", second,
                                      "--dvc-file", str(folder / "dvc.yaml")])  # fmt: skip
    assert failed.exit_code == 1 and "rolled back" in failed.stderr
