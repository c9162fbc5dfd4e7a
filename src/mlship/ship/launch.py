"""Start a local server or the image on 127.0.0.1 and wait until it is ready; stop it after.

Used by the load test, the tests and the benchmarks.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlship.errors import CheckError


def installed(command: str) -> str | None:
    """A command installed beside this Python (a virtual environment's tools, whether or not
    it is activated), or else on PATH."""
    beside = Path(sys.executable).with_name(command)
    return str(beside) if beside.is_file() else shutil.which(command)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(probe: str, timeout: float, alive: Callable[[], bool]) -> None:
    """Poll the `probe` URL until it answers 200, while `alive()` says the server runs."""
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise CheckError(f"the server behind {probe} exited before it was ready")
        try:
            answer = httpx.get(probe, timeout=2)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.TransportError as error:
            last = repr(error)
        time.sleep(0.3)
    raise CheckError(f"{probe} did not answer 200 within {timeout:.0f} s (last answer: {last})")


@contextmanager
def local_server(model: Path | str, workers: int = 2, timeout: float = 120) -> Iterator[str]:
    """`mlship serve` on a free port of 127.0.0.1; yields its URL, stops it on exit."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlship",
            "serve",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/ready", timeout, lambda: server.poll() is None)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def run_container(
    client: Any,
    reference: str,
    port: int,
    start: bool = True,
    environment: dict[str, str] | None = None,
) -> Any:
    """The image as production runs it: non-root, read-only root filesystem with only /tmp
    writable, no capabilities, no privilege escalation; on 127.0.0.1:<port>, with
    `environment` (the signature policy: Settings.trust_environment). Created only, not
    started, with `start=False`."""
    import docker.errors

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:  # as `docker run` does
        client.images.pull(reference)
    made = client.containers.create(
        reference,
        command=["--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
        network_mode="host",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        user="10001:10001",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        labels={"io.mlship.started-by": "mlship"},
        environment=environment or {},
    )
    if start:
        made.start()
    return made


def container_alive(container: Any) -> bool:
    container.reload()
    return container.status in ("created", "running")


@contextmanager
def running_image(
    client: Any, reference: str, environment: dict[str, str], timeout: float = 120
) -> Iterator[str]:
    """The image running as production runs it, on a free port; yields its URL."""
    port = free_port()
    container = run_container(client, reference, port, environment=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/ready", timeout, lambda: container_alive(container))
        yield url
    finally:
        container.remove(force=True)
