"""What the docker-marked end-to-end tests share: a temporary git checkout of the project to
run commands in. The engine and the test registry are session fixtures of tests/kube/fixtures.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import hermetic_env
from tests.integration.conftest import BIN
from tests.kube.fixtures import REGISTRY
from tests.projects import scratch_project


def remove_image(engine: Any, reference: str) -> None:
    from docker.errors import ImageNotFound

    # force-removing one tag can take the image's other tags with it
    with contextlib.suppress(ImageNotFound):
        engine.images.remove(reference, force=True)


def run(root: Path, env: dict[str, str], *command: str) -> str:
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def checkout(
    root: Path, *extra: str, path_first: tuple[Path, ...] = (), example: str = "penguins"
) -> dict[str, str]:
    """A git checkout in `root` of what an image build needs (and the top-level files named in
    `extra`), with an example's params and a short load test; returns its environment."""
    scratch_project(
        root,
        example,
        "Dockerfile",
        "requirements-serve.lock",
        "requirements.lock",
        "pyproject.toml",
        "README.md",
        *extra,
    )
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["loadtest"] = {
        "users": 8,
        "spawn_rate": 8,
        "duration_seconds": 8,
        "max_p95_ms": 500,
        "max_p99_ms": 1000,
        "min_requests": 50,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = hermetic_env()
    env |= {
        "PATH": os.pathsep.join([*map(str, path_first), str(BIN), env["PATH"]]),
        "MLSHIP_REGISTRY": REGISTRY,
        "MLSHIP_BASE_IMAGE": os.environ.get("MLSHIP_BASE_IMAGE", "python:3.11-slim-bookworm"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    for command in (
        ("git", "init", "-q"),
        ("dvc", "init", "-q"),
        ("dvc", "config", "core.analytics", "false"),
    ):
        run(root, env, *command)
    return env


def commit(root: Path, env: dict[str, str]) -> None:
    run(root, env, "git", "add", "-A")
    run(root, env, "git", "commit", "-q", "-m", "e2e")
