"""The checkout's state on the model card: what DVC rewrites while it runs is not a change."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlship.vcs import git_state
from tests.ci.act import GIT_IDENTITY
from tests.conftest import hermetic_env


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args], cwd=repo, env=hermetic_env() | GIT_IDENTITY, check=True, capture_output=True
    )


def test_only_changes_to_code_and_params_make_the_tree_dirty(tmp_path: Path) -> None:
    for name in ("params.yaml", "dvc.lock", "data/raw/.gitignore"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "one")
    # when dvc repro rewrites its lock and an output's .gitignore / then still clean
    (tmp_path / "dvc.lock").write_text("v2\n")
    (tmp_path / "data/raw/.gitignore").write_text("v2\n")
    assert git_state(tmp_path).dirty is False
    # when params change / then dirty
    (tmp_path / "params.yaml").write_text("v2\n")
    assert git_state(tmp_path).dirty is True
