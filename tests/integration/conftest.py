"""A throw-away copy of the repository in which the real DVC pipeline runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, hermetic_env

BIN = Path(sys.executable).parent


class Workspace:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def run(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def repro(self, *flags: str) -> str:
        done = self.run(str(BIN / "dvc"), "repro", *flags)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def use_params(self, source: Path) -> None:
        shutil.copy(source, self.root / "params.yaml")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """dvc.yaml, params.yaml and the stage sources, in a fresh DVC project (no git)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for folder in ("src", "model"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = hermetic_env()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    space = Workspace(root, env)
    for command in (("init", "--no-scm", "-q"), ("config", "core.analytics", "false")):
        done = space.run(str(BIN / "dvc"), *command)
        assert done.returncode == 0, done.stderr
    return space
