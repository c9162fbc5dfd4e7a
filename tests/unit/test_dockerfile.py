"""The Dockerfile's static checks; tests/e2e builds and runs it for real."""

import subprocess

from tests.conftest import REPO
from tests.tools import tool

DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_hadolint_passes() -> None:
    done = subprocess.run(
        [tool("hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_is_a_build_argument_with_the_standard_default() -> None:
    assert DOCKERFILE.startswith("#") and "ARG BASE_IMAGE=python:3.11-slim-bookworm" in DOCKERFILE
    assert DOCKERFILE.count("FROM ${BASE_IMAGE}") == 2  # builder and runtime


def test_runtime_is_non_root_and_needs_no_curl() -> None:
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert "USER 10001:10001" in runtime
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    instructions = [line for line in runtime.splitlines() if not line.lstrip().startswith("#")]
    assert "HEALTHCHECK" in runtime and not any("curl" in line for line in instructions)
    assert 'ENTRYPOINT ["mlship", "serve"' in runtime


def test_the_server_imports_without_the_pipeline_only_libraries() -> None:
    """The image has the serve extra only: the server's modules must not pull in what the
    pipeline alone needs (matplotlib, mlflow's server side, dvc, locust)."""
    import subprocess
    import sys

    blocked = ["matplotlib", "dvc", "locust", "fsspec"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import mlship.cli, mlship.serving.app, mlship.serving.plane, mlship.batch.local\n"
        "from mlship.config.settings import Settings\n"
        "from mlship.serving.app import create_app\n"
        "create_app('models', Settings(monitor_sink='/tmp/mlship-sink-check'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
