"""A team makes the repository its own, as README's "Bring your own model" walks through it:
another data set, its own model name, a factory in a package of its own. `make pipeline`
goes through, each CI file's test stage (`make check`) passes on it, and editing the team's
code makes the gate refuse until the model is trained again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlship.ship.delivery import STEPS
from tests.ci.act import GIT_IDENTITY, commit, copy_repository
from tests.conftest import hermetic_env

pytestmark = pytest.mark.integration
TEAM = Path(__file__).with_name("team_project")
VENV = Path(sys.executable).parent.parent  # the installed environment, never reinstalled


def _run(repo: Path, *command: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """In the team's checkout; no Docker engine (the image step says so and is skipped: the
    image has tests of its own in tests/e2e)."""
    env = (
        hermetic_env()
        | GIT_IDENTITY
        | {
            "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        }
    )
    return subprocess.run(
        command,
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def _make(repo: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return _run(repo, "make", *targets, f"VENV={VENV}", "-o", f"{VENV}/.installed")


def _add_train_dependency(repo: Path, folder: str) -> None:
    """The edit README asks for: the package joins the train stage's deps in dvc.yaml."""
    dvc_file = repo / "dvc.yaml"
    text = dvc_file.read_text()
    anchor = "      - model  # the team's own model code"
    assert anchor in text
    dvc_file.write_text(text.replace(anchor, f"      - {folder}\n{anchor}"))


def test_a_team_s_own_project_goes_through_and_stays_honest(tmp_path: Path) -> None:
    # given the repository with the team's params.yaml and its package, committed
    repo = tmp_path / "team"
    repo.mkdir()
    copy_repository(repo, branch="main", example=None)
    shutil.copy(TEAM / "params.yaml", repo / "params.yaml")
    shutil.copytree(TEAM / "gemstones", repo / "gemstones")
    commit(repo)

    # when the main job runs with the package outside the train stage's dependencies
    refused = _make(repo, "pipeline")
    # then training is refused, saying where the code should go
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "the model's code is outside the train stage's dependencies in dvc.yaml" in said
    assert "add 'gemstones' to the train stage's deps in dvc.yaml" in said

    # when the team adds it there, as told / then the main job goes through
    _add_train_dependency(repo, "gemstones")
    commit(repo)
    done = _make(repo, "pipeline")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = done.stdout + done.stderr
    assert "gate: passed" in summary and "next:" in summary
    assert "image step not run: no Docker engine is reachable" in summary
    gate = json.loads((repo / "reports/gate.json").read_text())
    assert gate["passed"] and gate["model_name"] == "diamond-prices"
    assert gate["champion_version"] is None  # the first model under its own name
    card = json.loads((repo / "models/model_card.json").read_text())
    assert card["name"] == "diamond-prices" and card["code"] == ["gemstones"]

    # and each CI file's test stage passes on the team's project
    test_stage = next(stage for stage in STEPS if stage.name == "test")
    assert test_stage.command == "make check"
    checked = _make(repo, "check")
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-4000:]

    # when the team's code changes / then the gate refuses the model trained before it
    pricing = repo / "gemstones" / "pricing.py"
    pricing.write_text(pricing.read_text().replace('"volume"', '"volume_mm3"'))
    stale = _run(repo, str(VENV / "bin" / "mlship"), "gate")
    assert stale.returncode == 2, stale.stdout + stale.stderr
    assert "train" in stale.stderr and "dvc repro" in stale.stderr
    # and passes again once it is trained on the new code
    assert _make(repo, "train").returncode == 0
    again = _run(repo, str(VENV / "bin" / "mlship"), "gate")
    assert again.returncode == 0, again.stdout + again.stderr
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["name"] == "diamond-prices"
