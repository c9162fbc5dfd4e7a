"""The tools and real systems tests run (linters, promtool, Prometheus, rclone, ...): found
beside this Python (the dev extra's binaries) or on PATH; skipped where absent, and a failure
instead under MLSHIP_REQUIRE_TOOLS=1, which .ci/run sets after installing every one."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from mlship.ship.launch import installed


def unavailable(why: str, module: bool = False) -> NoReturn:
    """Skip the test (or, with `module`, every test of the module being collected) for want
    of a tool or real system; fail it under MLSHIP_REQUIRE_TOOLS."""
    if os.environ.get("MLSHIP_REQUIRE_TOOLS") == "1":
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=module)


def tool(name: str) -> str:
    found = installed(name)
    if found is None:
        unavailable(f"{name} is not installed (`make install` or .ci/run installs it)")
    return found
