"""A server process for a test: started, awaited on a probe URL, stopped by PID."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlship.errors import CheckError
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
) -> Iterator[subprocess.Popen[bytes]]:
    """The server's output goes to `log` (a temporary file if none is given); when it does
    not become ready, the error carries the output's last lines."""
    with tempfile.TemporaryDirectory(prefix="mlship-test-server-") as scratch:
        log = log or Path(scratch) / "server.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
            )
            try:
                try:
                    wait_ready(probe, ready_timeout, lambda: process.poll() is None)
                except CheckError as error:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                    raise CheckError(f"{error}\n--- the server's last lines:\n{tail}") from None
                yield process
            finally:
                process.terminate()
                try:
                    process.wait(timeout=stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
