"""Start `mlship serve` as a real process on 127.0.0.1 and stop it by PID."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlship.ship.launch import free_port
from tests.processes import running

BIN = Path(sys.executable).parent


@contextmanager
def running_server(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None, probe: str = "/ready"
) -> Iterator[str]:
    """The server's URL once `probe` answers 200 (/health for one that has no model yet)."""
    with running_server_process(*args, env=env, log=log, probe=probe) as (url, _):
        yield url


@contextmanager
def running_server_process(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None, probe: str = "/ready"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The same, with the server's process (to find or signal its workers)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "mlship"), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with running(command, f"{url}{probe}", ready_timeout=90, env=env, log=log) as process:
        yield url, process
