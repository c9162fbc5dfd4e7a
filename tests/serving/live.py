"""Start `mlship serve` as a real process on 127.0.0.1 and stop it by PID."""

from __future__ import annotations

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
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "mlship"), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with running(command, f"{url}{probe}", ready_timeout=90, env=env, log=log):
        yield url
