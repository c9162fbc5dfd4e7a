"""The image for real: build, push, pull back, run as production runs it, load-test it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlship import image
from mlship.errors import InputError
from tests.conftest import REPO, hermetic_env
from tests.integration.conftest import BIN

pytestmark = pytest.mark.docker
# a throw-away registry for test images; never the deployment's MLSHIP_REGISTRY
REGISTRY = os.environ.get("MLSHIP_TEST_REGISTRY", "127.0.0.1:5001")


def _unavailable(why: str) -> None:
    if os.environ.get("MLSHIP_REQUIRE_DOCKER") == "1":
        pytest.fail(f"required here: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def engine() -> Any:
    try:
        return image.engine()
    except InputError as error:
        _unavailable(str(error))


@pytest.fixture(scope="module")
def registry(engine: Any) -> str:
    """The test registry (MLSHIP_TEST_REGISTRY, default 127.0.0.1:5001), answering."""
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        _unavailable(f"no registry answers at {REGISTRY} (MLSHIP_TEST_REGISTRY): {error}")
    return REGISTRY


def _remove(engine: Any, reference: str) -> None:
    from docker.errors import ImageNotFound

    # force-removing one tag can take the image's other tags with it
    with contextlib.suppress(ImageNotFound):
        engine.images.remove(reference, force=True)


def _run(root: Path, env: dict[str, str], *command: str) -> str:
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def assemble(root: Path, *extra: str) -> None:
    """What an image build needs from the repo, and the penguins example with a short load
    test, in `root`; `extra` names more top-level files to copy."""
    root.mkdir()
    for name in ("dvc.yaml", ".dvcignore", "Dockerfile", "requirements-serve.lock",
                 "pyproject.toml", "README.md", *extra):  # fmt: skip
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "examples/penguins/params.yaml").read_text())
    params["loadtest"] = {"users": 8, "spawn_rate": 8, "duration_seconds": 8,
                          "max_p95_ms": 500, "max_p99_ms": 1000, "min_requests": 50}  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, registry: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A git checkout of the repo with the penguins pipeline run in it."""
    root = tmp_path_factory.mktemp("e2e") / "repo"
    assemble(root)
    env = hermetic_env()
    env |= {"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "MLSHIP_REGISTRY": REGISTRY,
            "MLSHIP_BASE_IMAGE": os.environ.get("MLSHIP_BASE_IMAGE", "python:3.11-slim-bookworm"),
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    for command in (("git", "init", "-q"), ("dvc", "init", "-q"),
                    ("dvc", "config", "core.analytics", "false"), ("git", "add", "-A"),
                    ("git", "commit", "-q", "-m", "e2e")):  # fmt: skip
        _run(root, env, *command)
    _run(root, env, "dvc", "repro")
    yield root, env


def test_build_push_pull_run_and_load_test(
    project: tuple[Path, dict[str, str]], engine: Any
) -> None:
    root, env = project
    # when built and pushed
    _run(root, env, str(BIN / "mlship"), "image", "build")
    _run(root, env, str(BIN / "mlship"), "image", "push")
    built = json.loads((root / "reports/image.json").read_text())
    reference = built["references"][0]
    assert built["pushed"] and built["digest"].startswith("sha256:")
    git_sha = _run(root, env, "git", "rev-parse", "HEAD").strip()
    assert reference == f"{REGISTRY}/mlship:{git_sha[:12]}-mlocal"
    assert built["size_bytes"] < 600e6, built["size_bytes"]

    # then the registry serves it back
    for tagged in built["references"]:
        _remove(engine, tagged)
    repository, tag = reference.rsplit(":", 1)
    pulled = engine.images.pull(repository, tag=tag)
    labels = pulled.labels
    assert labels["org.opencontainers.image.revision"] == git_sha
    assert labels["io.mlship.model.name"] == "mlship-model"
    assert pulled.attrs["Config"]["User"] == "10001:10001"

    # when run as production runs it: non-root, read-only root filesystem, only /tmp writable
    port = image.free_port()
    container = image.run_container(engine, reference, port)
    try:
        url = f"http://127.0.0.1:{port}"
        image.wait_ready(f"{url}/ready", 120, lambda: image.container_alive(container))
        assert container.exec_run("id -u").output.decode().strip() == "10001"
        assert container.exec_run("touch /opt/model/x").exit_code != 0
        # then it answers, and /model matches the labels
        answer = httpx.post(f"{url}/predict", json={
            "island": "Biscoe", "sex": "female", "bill_length_mm": 46.5, "bill_depth_mm": 14.8,
            "flipper_length_mm": 217.0, "body_mass_g": 5200.0,
        })  # fmt: skip
        assert answer.status_code == 200 and answer.json()["label"] == "Gentoo"
        model = httpx.get(f"{url}/model").json()
        assert model["git_sha"] == labels["org.opencontainers.image.revision"]
        assert model["version"] == labels["io.mlship.model.version"]
        assert model["run_id"] == labels["io.mlship.mlflow.run_id"]
        assert model["metrics"]["accuracy"] > 0.9
        # and the load-test gate passes against it
        _run(root, env, str(BIN / "mlship"), "loadtest", "--url", url)
        report = json.loads((root / "reports/loadtest.json").read_text())
        assert report["passed"] and report["summary"]["failures"] == 0
        assert (root / "reports/junit/loadtest.xml").is_file()
        assert (root / "reports/loadtest.html").stat().st_size > 0
    finally:
        container.remove(force=True)
        for tagged in built["references"]:
            _remove(engine, tagged)
