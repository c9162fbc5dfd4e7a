"""A scratch project (tests/projects.py) in which the real DVC pipeline runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import hermetic_env
from tests.projects import scratch_project, use_example

BIN = Path(sys.executable).parent


class Workspace:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def run(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def repro(self, *flags: str) -> str:
        done = self.run(str(BIN / "dvc"), "repro", *flags)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def use_example(self, name: str) -> None:
        """The example's files, its latency bound widened: these tests check flows, not this
        machine's speed, and the suite's other process may be building images meanwhile (the
        penguins model measured 4,576 µs a row then, against its 2,000)."""
        use_example(self.root, name)
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        if "max_us_per_row" in params.get("gate", {}):
            params["gate"]["max_us_per_row"] = 20_000
            path.write_text(yaml.safe_dump(params))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """The reviews example in a fresh DVC project (no git); `use_example` switches it."""
    root = scratch_project(tmp_path / "repo")
    env = hermetic_env()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    space = Workspace(root, env)
    for command in (("init", "--no-scm", "-q"), ("config", "core.analytics", "false")):
        done = space.run(str(BIN / "dvc"), *command)
        assert done.returncode == 0, done.stderr
    return space
