"""What the docker-marked end-to-end tests share: the engine, the throw-away test registry,
and a temporary git checkout of the project to run commands in."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import yaml

from mlship.errors import ServiceError
from mlship.ship import image
from tests.conftest import hermetic_env
from tests.integration.conftest import BIN
from tests.projects import scratch_project

# a throw-away registry for test images; never the deployment's MLSHIP_REGISTRY
REGISTRY = os.environ.get("MLSHIP_TEST_REGISTRY", "127.0.0.1:5001")


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("MLSHIP_REQUIRE_DOCKER") == "1":
        pytest.fail(f"required here: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def engine() -> Any:
    try:
        return image.engine()
    except ServiceError as error:  # a Docker CLI without an engine is no engine
        _unavailable(str(error))


@pytest.fixture(scope="session")
def registry(engine: Any) -> str:
    """The test registry (MLSHIP_TEST_REGISTRY, default 127.0.0.1:5001), answering."""
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        _unavailable(f"no registry answers at {REGISTRY} (MLSHIP_TEST_REGISTRY): {error}")
    return REGISTRY


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
