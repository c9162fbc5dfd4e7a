"""Build and push the serving image through the Docker SDK.

The build context is staged in a temporary folder: the Dockerfile, the serving lock, the
model directory and wheels/ (the lock's wheels, downloaded and hash-checked here, plus
mlship's own), so the Docker build needs no network and installs exactly the lock.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlship.errors import CheckError, InputError

SERVE_LOCK = "requirements-serve.lock"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "linux_x86_64")  # fmt: skip
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImagePlan:
    repository: str  # <registry>/<name>
    tags: tuple[str, ...]  # <gitsha>-m<version>, <gitsha>
    build_args: dict[str, str]

    @property
    def references(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.tags]


def plan(
    registry: str, name: str, model_name: str, git_sha: str, card: dict[str, Any],
    dvc_lock_sha256: str, source: str, created: str, base_image: str,
) -> ImagePlan:  # fmt: skip
    version = str(card.get("registry", {}).get("version", "local"))
    short = git_sha[:12] if git_sha != "unknown" else "unknown"
    args = {
        "BASE_IMAGE": base_image,
        "SOURCE": source,
        "REVISION": git_sha,
        "CREATED": created,
        "MODEL_NAME": str(card.get("registry", {}).get("name", model_name)),
        "MODEL_VERSION": version,
        "RUN_ID": str(card.get("mlflow", {}).get("run_id", "")),
        "DVC_LOCK_SHA256": dvc_lock_sha256,
    }
    return ImagePlan(f"{registry.rstrip('/')}/{name}", (f"{short}-m{version}", short), args)


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CheckError(f"{what} failed:\n{done.stderr[-3000:]}")


def download_wheels(lock: Path, cache: Path, project: Path) -> None:
    """The lock's wheels for CPython 3.11 on x86-64 Linux, and mlship's own wheel."""
    cache.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
         "--abi", "cp311", *platforms, "-r", str(lock), "-d", str(cache)],
        f"downloading the wheels in {lock}",
    )  # fmt: skip
    for old in cache.glob("mlship-*.whl"):
        old.unlink()
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(cache),
          str(project)], "building mlship's wheel")  # fmt: skip


def stage_context(
    folder: Path, dockerfile: Path, lock: Path, model_dir: Path, wheels: Path,
    card: dict[str, Any], metrics: dict[str, Any] | None,
) -> None:  # fmt: skip
    from mlship.artifacts import CARD_FILE
    from mlship.files import write_json

    shutil.copy(dockerfile, folder / "Dockerfile")
    shutil.copy(lock, folder / SERVE_LOCK)
    shutil.copytree(model_dir, folder / "model")
    write_json(folder / "model" / CARD_FILE, card)  # with the registry version, if any
    if metrics is not None:
        write_json(folder / "model" / "metrics.json", metrics)
    for path in (folder / "model").iterdir():
        path.chmod(0o644)  # the server runs as an unprivileged user
    shutil.copytree(wheels, folder / "wheels")


def engine() -> Any:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        raise InputError(
            f"no Docker engine is reachable (DOCKER_HOST or /var/run/docker.sock): {error}"
        ) from error
    return client


def _stream(
    chunks: Iterable[dict[str, Any]], progress: Progress, what: str
) -> list[dict[str, Any]]:
    seen = []
    for chunk in chunks:
        seen.append(chunk)
        if "error" in chunk:
            raise CheckError(f"{what} failed: {chunk['error'].strip()}")
        text = chunk.get("stream") or chunk.get("status")
        if text and text.strip():
            progress(text.rstrip())
    return seen


def build(client: Any, context: Path, image: ImagePlan, progress: Progress) -> str:
    """Build, tag every reference, return the image id."""
    first, *others = image.references
    chunks = client.api.build(
        path=str(context), tag=first, buildargs=image.build_args, network_mode="host",
        rm=True, forcerm=True, decode=True, pull=False,
    )  # fmt: skip
    _stream(chunks, progress, "docker build")
    image_id = str(client.images.get(first).id)
    for reference in others:
        repository, tag = reference.rsplit(":", 1)
        client.api.tag(image_id, repository, tag)
    return image_id


def push(client: Any, references: list[str], progress: Progress) -> str:
    """Push every reference; return the registry digest."""
    digest = ""
    for reference in references:
        repository, tag = reference.rsplit(":", 1)
        try:
            chunks = client.api.push(repository, tag, stream=True, decode=True)
            for chunk in _stream(chunks, progress, f"docker push {reference}"):
                digest = chunk.get("aux", {}).get("Digest", digest)
        except CheckError:
            raise
        except Exception as error:  # the docker SDK and requests raise many kinds
            raise CheckError(f"docker push {reference} failed: {error}") from error
    return digest


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(probe: str, timeout: float, alive: Callable[[], bool]) -> None:
    """Poll the `probe` URL until it answers 200, while `alive()` says the server runs."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise CheckError(f"the server behind {probe} exited before it was ready")
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise CheckError(f"{probe} did not answer 200 within {timeout:.0f} s")


def run_container(client: Any, reference: str, port: int) -> Any:
    """The image as production runs it: non-root, read-only root filesystem with only /tmp
    writable, no capabilities, no privilege escalation; on 127.0.0.1:<port>."""
    return client.containers.run(
        reference, command=["--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
        detach=True, network_mode="host", read_only=True, tmpfs={"/tmp": "rw,size=64m"},
        user="10001:10001", cap_drop=["ALL"], security_opt=["no-new-privileges"],
        labels={"io.mlship.started-by": "mlship"},
    )  # fmt: skip


def container_alive(container: Any) -> bool:
    container.reload()
    return container.status in ("created", "running")
