"""The vulnerability gate's two ends that run here: real trivy refusing to judge without its
database (it cannot be downloaded here), and the reading of a report with findings (from a
stand-in trivy that prints a report in trivy's own JSON shape, since no database means no
real findings here). The SBOM itself is made and pushed for real in tests/e2e/test_image.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlship.errors import ServiceError
from mlship.ship import supply_chain

SBOM = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "version": 1,
    "components": [
        {
            "type": "library",
            "name": "requests",
            "version": "2.0.0",
            "purl": "pkg:pypi/requests@2.0.0",
            "bom-ref": "pkg:pypi/requests@2.0.0",
        }
    ],
}
REPORT = {
    "SchemaVersion": 2,
    "Results": [
        {
            "Target": "Python",
            "Class": "lang-pkgs",
            "Type": "python-pkg",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2018-18074",
                    "PkgName": "requests",
                    "InstalledVersion": "2.0.0",
                    "FixedVersion": "2.20.0",
                    "Severity": "HIGH",
                }
            ],
        },
        {"Target": "debian", "Class": "os-pkgs"},
    ],
}


@pytest.fixture
def sbom(tmp_path: Path) -> Path:
    path = tmp_path / "sbom.cdx.json"
    path.write_text(json.dumps(SBOM))
    return path


def test_without_its_database_trivy_cannot_pass_an_image(
    sbom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIVY_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(ServiceError, match="trivy could not scan"):
        supply_chain.scan_vulnerabilities(sbom, "HIGH,CRITICAL", tmp_path / "report.json")


def test_findings_are_read_from_trivys_report(
    sbom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in = tmp_path / "bin" / "trivy"
    stand_in.parent.mkdir()
    args = tmp_path / "args"
    stand_in.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(args)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        "out = sys.argv[sys.argv.index('--output') + 1]\n"
        f"open(out, 'w').write({json.dumps(json.dumps(REPORT))})\nsys.exit(3)\n"
    )
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}{os.pathsep}{os.environ['PATH']}")
    found = supply_chain.scan_vulnerabilities(sbom, "HIGH,CRITICAL", tmp_path / "report.json")
    assert found == [supply_chain.Finding("CVE-2018-18074", "requests", "2.0.0", "2.20.0", "HIGH")]
    called = json.loads(args.read_text())
    assert called[:1] == ["sbom"] and called[-1] == str(sbom)
    assert {"--ignore-unfixed", "HIGH,CRITICAL"} <= set(called)


def test_only_a_loopback_registry_is_spoken_to_in_plain_http() -> None:
    assert supply_chain.plain_http("127.0.0.1:5001/mlship@sha256:ab")
    assert supply_chain.plain_http("localhost:5000/mlship")
    assert not supply_chain.plain_http("europe-docker.pkg.dev/p/r/mlship:1")
