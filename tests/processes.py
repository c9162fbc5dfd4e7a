"""A server process for a test: started, awaited on a probe URL, stopped by PID."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlship.ship.launch import wait_ready


@contextmanager
def running(
    command: list[str],
    probe: str,
    *,
    ready_timeout: float,
    stop_timeout: float = 20,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[None]:
    out = log.open("w") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        wait_ready(probe, ready_timeout, lambda: process.poll() is None)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            out.close()  # type: ignore[union-attr]
