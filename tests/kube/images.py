"""Images the node runs, made through the registry's own API (Docker Registry HTTP API v2)
from the one serving image a session builds: another tag of the same image (a new build of
the same model), and an image with files replaced in one layer on top (a model the server
refuses at start, a model that fails its warm-up). Each is a real image in the registry,
pulled and run by the node like any other; none needs a Docker build (under the engine's
vfs storage each build step copies the whole filesystem)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass

import httpx

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class Reference:
    registry: str  # host:port
    repository: str
    tag: str

    @classmethod
    def parse(cls, reference: str) -> Reference:
        registry, rest = reference.split("/", 1)
        repository, tag = rest.rsplit(":", 1)
        return cls(registry, repository, tag)

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    def tagged(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag)

    @property
    def api(self) -> str:
        return f"http://{self.registry}/v2/{self.repository}"


def _manifest(image: Reference) -> dict[str, object]:
    answer = httpx.get(f"{image.api}/manifests/{image.tag}", headers={"Accept": MANIFEST})
    answer.raise_for_status()
    found: dict[str, object] = answer.json()
    return found


def _put_manifest(image: Reference, manifest: dict[str, object]) -> None:
    body = json.dumps(manifest).encode()
    answer = httpx.put(
        f"{image.api}/manifests/{image.tag}", content=body, headers={"Content-Type": MANIFEST}
    )
    answer.raise_for_status()


def _upload(image: Reference, blob: bytes) -> str:
    digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
    if httpx.head(f"{image.api}/blobs/{digest}").status_code == 200:
        return digest
    started = httpx.post(f"{image.api}/blobs/uploads/")
    started.raise_for_status()
    location = started.headers["Location"]
    if location.startswith("/"):
        location = f"http://{image.registry}{location}"
    separator = "&" if "?" in location else "?"
    done = httpx.put(
        f"{location}{separator}digest={digest}",
        content=blob,
        headers={"Content-Type": "application/octet-stream"},
    )
    done.raise_for_status()
    return digest


def retag(image: Reference, tag: str) -> Reference:
    """The same image under another tag."""
    tagged = image.tagged(tag)
    _put_manifest(tagged, _manifest(image))
    return tagged


def with_files(image: Reference, tag: str, files: dict[str, bytes]) -> Reference:
    """The image with one layer on top that writes `files` (path in the image -> content,
    readable by all), under `tag`."""
    manifest = _manifest(image)
    config_ref = manifest["config"]
    assert isinstance(config_ref, dict)
    config_blob = httpx.get(f"{image.api}/blobs/{config_ref['digest']}")
    config_blob.raise_for_status()
    config = config_blob.json()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    layer_digest = _upload(image, layer)
    config["rootfs"]["diff_ids"].append(f"sha256:{hashlib.sha256(raw.getvalue()).hexdigest()}")
    config.setdefault("history", []).append({"created_by": f"tests/kube/images.py: {list(files)}"})
    config_bytes = json.dumps(config).encode()
    config_digest = _upload(image, config_bytes)
    layers = manifest["layers"]
    assert isinstance(layers, list)
    derived = {
        **manifest,
        "config": {**config_ref, "digest": config_digest, "size": len(config_bytes)},
        "layers": [*layers, {"mediaType": LAYER, "size": len(layer), "digest": layer_digest}],
    }
    tagged = image.tagged(tag)
    _put_manifest(tagged, derived)
    return tagged
