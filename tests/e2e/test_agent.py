"""The CI agent image (.ci/agent.Dockerfile) builds and carries what the Makefile needs.

Built here without Google's apt repository (GOOGLE_CLOUD_CLI=false: no internet here), so
gcloud and kubectl are left to the real CI systems; the rest is checked as Jenkins runs it,
under an arbitrary uid with no home directory.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import remove_image

pytestmark = pytest.mark.docker
TAG = "mlship-agent:test"


def test_the_agent_runs_the_makefile_as_an_unprivileged_user(engine: Any) -> None:
    base = os.environ.get("MLSHIP_BASE_IMAGE", "python:3.11-slim-bookworm")
    engine.images.build(
        path=str(REPO / ".ci"),
        dockerfile="agent.Dockerfile",
        tag=TAG,
        network_mode="host",
        buildargs={"BASE_IMAGE": base, "GOOGLE_CLOUD_CLI": "false"},
        rm=True,
        pull=False,
    )
    try:
        # the venv's pip, as `make install` uses it: the base may carry no system pip
        script = (
            "make --version | head -1 && git --version && python3 -m venv /tmp/venv"
            " && /tmp/venv/bin/python -m pip cache dir && make -s help"
        )
        output = engine.containers.run(
            TAG,
            ["bash", "-c", script],
            user="4242:4242",
            remove=True,
            network_mode="none",
            volumes={str(REPO): {"bind": "/src", "mode": "ro"}},
            working_dir="/src",
        ).decode()
    finally:
        remove_image(engine, TAG)
    assert "GNU Make" in output and "git version" in output
    assert "/tmp/cache/pip" in output  # caches land where any uid may write
    for target in ("make train", "make gate", "make deploy", "make promote"):
        assert target in output
