"""The delivery as a CI system runs it: each stage's command from src/mlship/delivery.py, in
order, in a fresh git checkout, with a real DVC remote, MLflow store, Docker engine and
registry. Only kubectl is the fake one (no cluster here); the approval is the release
manager's name, as each CI hands it to `make promote`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlship.delivery import APPROVE, STAGES
from tests.conftest import REPO
from tests.e2e.conftest import checkout, commit, remove_image, run
from tests.integration.conftest import BIN

pytestmark = pytest.mark.docker
FAKE_KUBECTL = REPO / "tests" / "fake_kubectl"
VENV = BIN.parent
# the suite itself is the `test` stage; make must reuse this environment, not install one
MAKE = ("make", f"VENV={VENV}", "-o", f"{VENV}/.installed")


@pytest.fixture
def delivery_checkout(
    tmp_path: Path, engine: Any, registry: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path / "repo"
    env = checkout(root, "Makefile", "requirements.lock", path_first=(FAKE_KUBECTL,))
    env |= {
        "FAKE_KUBECTL_STATE": str(tmp_path / "cluster.json"),
        "FAKE_KUBECTL_LOG": str(tmp_path / "kubectl.log"),
        "APPROVER": "release-manager",
    }
    run(root, env, "dvc", "remote", "add", "-d", "ci", str(tmp_path / "dvc-remote"))
    commit(root, env)
    yield root, env
    if (root / "reports/image.json").is_file():
        for reference in json.loads((root / "reports/image.json").read_text())["references"]:
            remove_image(engine, reference)


def test_every_stage_runs_in_order_from_training_to_a_promoted_production_model(
    delivery_checkout: tuple[Path, dict[str, str]],
) -> None:
    root, env = delivery_checkout
    ran = []
    for stage in STAGES:
        if stage.name == "test" or stage.name == APPROVE:
            continue  # this suite is `test`; APPROVER stands for the approval
        assert stage.command is not None and stage.command.startswith("make ")
        run(root, env, *MAKE, *stage.command.split()[1:])
        ran.append(stage.name)
    assert ran[0] == "train" and ran[-1] == "promote"

    # the outputs went to the DVC remote, the image to the registry
    assert any((root.parent / "dvc-remote").rglob("*")), "dvc push stored nothing"
    built = json.loads((root / "reports/image.json").read_text())
    assert built["pushed"] and built["references"][0].endswith("-m1")
    # both environments run the image, and the model moved to @champion with its approver
    for env_name in ("staging", "production"):
        report = json.loads((root / f"reports/deploy-{env_name}.json").read_text())
        assert report["ok"] and report["image"] == built["references"][0], report
    cluster = json.loads((root.parent / "cluster.json").read_text())
    assert cluster["revisions"][-1] == built["references"][0]  # what the cluster runs now
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlruns/mlflow.db")
    champion = client.get_model_version_by_alias("mlship-model", "champion")
    assert str(champion.version) == "1"
    assert champion.tags["mlship.approved_by"] == "release-manager"
    assert champion.tags["mlship.gate"] == "passed"
    assert champion.tags["mlship.deployed.production"] == built["references"][0]
    # and the version names the pushed image by digest and its SBOM by sha256
    assert champion.tags["mlship.image"].endswith(f"@{built['digest']}")
    assert champion.tags["mlship.sbom_sha256"] == built["sbom_sha256"]
