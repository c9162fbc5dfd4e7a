"""Build and push the serving image through the Docker SDK.

The build context is staged in a temporary folder: the Dockerfile, the serving lock, the
model directory, wheels/ (the locks' wheels, downloaded and hash-checked here) and
mlship-wheel/ (mlship's own), so the Docker build needs no network and installs exactly
the locks. Only the wheels the locks pin are staged, and mlship's apart from them, so the
layer that installs the dependencies stays cached while the code or the model changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mlship.card import METRICS_FILE, ModelCard
from mlship.errors import CheckError, InputError, ServiceError, looks_unreachable
from mlship.files import read_json, write_json
from mlship.ship.lockfile import Pin, read_lock

SERVE_LOCK = "requirements-serve.lock"
FULL_LOCK = "requirements.lock"  # everything the pipeline may use, with hashes
EXTRA_LOCK = "requirements-extra.lock"  # staged: what this model needs beyond the server
WHEEL_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "linux_x86_64",
)
Progress = Callable[[str], None]
ZIP_EPOCH = 315532800  # 1980-01-01, the earliest time a zip file can hold


@dataclass(frozen=True)
class ImagePlan:
    repository: str  # <registry>/<name>
    tags: tuple[str, ...]  # <gitsha>-m<version>, <gitsha>
    build_args: dict[str, str]

    @property
    def references(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.tags]


class ImageRecord(BaseModel):
    """What `mlship image build` built and `mlship image push` pushed (reports/image.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    references: list[str]
    labels: dict[str, str]  # the build args, as recorded in the image's labels
    size_bytes: int
    pushed: bool = False
    digest: str | None = None
    sbom_sha256: str | None = None  # of the CycloneDX SBOM made from the pushed image
    sbom_reference: str | None = None  # where the registry holds it beside the image
    signature_reference: str | None = None  # the model's signature and provenance, beside it
    vulnerabilities: int | None = None  # fixable ones at the gate's severities; None: not scanned

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def reference(self) -> str:
        return self.references[0]

    @property
    def run_id(self) -> str:
        return self.labels.get("RUN_ID", "")

    @classmethod
    def load(cls, path: Path) -> ImageRecord:
        try:
            return cls.model_validate(read_json(path))
        except ValidationError as error:
            raise InputError(f"{path}: not an image record: {error}") from error

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))


def plan(
    registry: str,
    name: str,
    model_name: str,
    git_sha: str,
    card: ModelCard,
    dvc_lock_sha256: str,
    source: str,
    created: str,
    base_image: str,
    system: list[str] | None = None,
) -> ImagePlan:
    version = card.version
    short = git_sha[:12] if git_sha != "unknown" else "unknown"
    args = {
        "BASE_IMAGE": base_image,
        "SOURCE": source,
        "REVISION": git_sha,
        "CREATED": created,
        "MODEL_NAME": card.registry.name if card.registry else model_name,
        "MODEL_VERSION": version,
        "RUN_ID": card.run_id or "",
        "DVC_LOCK_SHA256": dvc_lock_sha256,
        "SYSTEM_PACKAGES": " ".join(system or []),
    }
    return ImagePlan(f"{registry.rstrip('/')}/{name}", (f"{short}-m{version}", short), args)


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise CheckError(f"{what} failed:\n{done.stderr[-3000:]}")


def download_wheels(locks: list[Path], cache: Path, project: Path) -> None:
    """The locks' wheels for CPython 3.11 on x86-64 Linux, and mlship's own wheel."""
    cache.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    for lock in locks:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                *platforms,
                "-r",
                str(lock),
                "-d",
                str(cache),
            ],
            f"downloading the wheels in {lock}",
        )
    for old in cache.glob("mlship-*.whl"):
        old.unlink()
    # fixed timestamps: the same code gives the same wheel, and the image build's cache holds
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(cache),
            str(project),
        ],
        "building mlship's wheel",
        env={**os.environ, "SOURCE_DATE_EPOCH": str(ZIP_EPOCH)},
    )


# shared libraries a wheel may expect from the system, and the Debian package that has them
SYSTEM_LIBRARIES = {b"libgomp.so.1": "libgomp1"}


def system_packages(pins: list[Pin], wheels: Path) -> list[str]:
    """Debian packages the extra wheels' native code links against (LightGBM: OpenMP)."""
    found: set[str] = set()
    for pin in pins:
        for wheel in wheels.glob(f"{pin.name.replace('-', '_')}-{pin.version}-*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if ".so" not in member:
                        continue
                    content = archive.read(member)
                    found.update(pkg for lib, pkg in SYSTEM_LIBRARIES.items() if lib in content)
    return sorted(found)


def write_extra_lock(path: Path, pins: list[Pin]) -> None:
    header = "# What this model needs beyond the server's lock (from requirements.lock).\n"
    path.write_text(header + "".join(pin.text for pin in pins), encoding="utf-8")


def locked_wheels(locks: list[Path], wheels: Path) -> list[Path]:
    """The wheels in `wheels` that the locks pin, one per pin (the cache may hold other
    models' wheels too); CheckError naming a pin that has none."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename
    from packaging.version import Version

    by_pin: dict[tuple[str, Version], Path] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        try:
            name, version, _, _ = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename:
            continue
        by_pin.setdefault((str(name), version), wheel)
    pins = [pin for lock in locks for pin in read_lock(lock).values()]
    missing = [f"{p.name}=={p.version}" for p in pins if (p.name, Version(p.version)) not in by_pin]
    if missing:
        raise CheckError(f"no wheel in {wheels} for {', '.join(missing)}")
    return [by_pin[(pin.name, Version(pin.version))] for pin in pins]


def stage_context(
    folder: Path,
    dockerfile: Path,
    locks: list[Path],
    model_dir: Path,
    wheels: Path,
    card: ModelCard,
    metrics: dict[str, Any] | None,
    signed: list[Path] | None = None,
) -> None:
    """Dockerfile, the locks, model/ (with the team's code under code/, and the model's
    signature and provenance: `signed`), wheels/ and mlship-wheel/."""
    shutil.copy(dockerfile, folder / "Dockerfile")
    for lock in locks:
        shutil.copy(lock, folder / lock.name)
    shutil.copytree(model_dir, folder / "model", ignore=shutil.ignore_patterns("__pycache__"))
    for path in signed or []:
        shutil.copy(path, folder / "model" / path.name)
    card.save(folder / "model")  # with the registry version, if any
    if metrics is not None:
        write_json(folder / "model" / METRICS_FILE, metrics)
    for path in (folder / "model").rglob("*"):  # the server runs as an unprivileged user
        path.chmod(0o755 if path.is_dir() else 0o644)
    for target, chosen in (
        ("wheels", locked_wheels(locks, wheels)),
        ("mlship-wheel", list(wheels.glob("mlship-*.whl"))),
    ):
        (folder / target).mkdir()
        for wheel in chosen:
            shutil.copy2(wheel, folder / target / wheel.name)


def engine() -> Any:
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as error:
        text = str(error)
        reason = (
            "nothing listens there"
            if "FileNotFoundError" in text or "refused" in text
            else text.splitlines()[0][:200]
        )
        raise ServiceError(
            f"no Docker engine is reachable at {where} ({reason}); start one, or point "
            "DOCKER_HOST at one"
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


def ensure_base_image(client: Any, base: str, progress: Progress) -> None:
    """The base image on the engine, pulled if it is not there yet; ServiceError with a hint
    when it cannot be had (an offline machine, no access to its registry)."""
    from docker.errors import DockerException, ImageNotFound

    try:
        client.images.get(base)
        return
    except ImageNotFound:
        pass
    progress(f"pulling the base image {base} ...")
    try:
        client.images.pull(base)
    except DockerException as error:
        reason = str(error).splitlines()[0][:300]
        raise ServiceError(
            f"the base image {base} is not on this Docker engine and cannot be pulled "
            f"({reason}); set MLSHIP_BASE_IMAGE to an image the engine has"
        ) from error


def build(client: Any, context: Path, image: ImagePlan, progress: Progress) -> str:
    """Build, tag every reference, return the image id."""
    first, *others = image.references
    chunks = client.api.build(
        path=str(context),
        tag=first,
        buildargs=image.build_args,
        network_mode="host",
        rm=True,
        forcerm=True,
        decode=True,
        pull=False,
    )
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
        except CheckError as error:
            if looks_unreachable(error):
                raise ServiceError(f"the registry did not answer: {error}") from error
            raise
        except Exception as error:  # the docker SDK and requests raise many kinds
            raise ServiceError(f"docker push {reference} failed: {error}") from error
    return digest
