"""Start `mlship serve` as a real process on 127.0.0.1 and stop it by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlship.image import free_port, wait_ready

BIN = Path(sys.executable).parent


@contextmanager
def running_server(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[str]:
    port = free_port()
    out = log.open("w") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [str(BIN / "mlship"), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/ready", 90, lambda: process.poll() is None)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            out.close()  # type: ignore[union-attr]
