"""compose/docker-compose.yml, the team stack on one host: valid for docker-compose, and
pinned to the versions the tests run for real (PostgreSQL, Prometheus, MLflow and what it
needs), with the same alert rules as Kubernetes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mlship.ship.lockfile import read_lock
from tests.conftest import REPO
from tests.integration.team_stack import POSTGRES_BIN
from tests.tools import tool

COMPOSE = REPO / "compose"


IMAGE = "registry.internal/mlship:0123456789ab-m7"


def _compose_config(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [tool("docker-compose"), "-f", str(COMPOSE / "docker-compose.yml"), "config"]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env={"PATH": "/usr/bin:/bin", **env}
    )


def _config(tmp_path: Path) -> dict[str, Any]:
    """The file as docker-compose resolves it, with the variables it requires set."""
    env = {
        "POSTGRES_PASSWORD": "p",
        "MINIO_ROOT_USER": "u",
        "MINIO_ROOT_PASSWORD": "s",
        "MLSHIP_IMAGE": IMAGE,
    }
    done = _compose_config(tmp_path, env)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[1]


def _version(command: list[str]) -> str:
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    assert found, text
    return found.group(1)


def test_the_stack_resolves_with_every_service_pinned(tmp_path: Path) -> None:
    services = _config(tmp_path)["services"]
    assert set(services) == {
        "postgres",
        "minio",
        "buckets",
        "mlflow",
        "mlship",
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        assert ":" in service["image"] and _tag(service["image"]) != "latest", name
    assert services["mlship"]["image"] == IMAGE
    assert services["mlship"]["read_only"] is True


def test_a_missing_secret_is_refused_by_name(tmp_path: Path) -> None:
    done = _compose_config(tmp_path, {})
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr


def test_the_versions_are_the_ones_the_tests_run(tmp_path: Path) -> None:
    services = _config(tmp_path)["services"]
    # the major version: Debian's point releases move under the tests, and data files and
    # the protocol are kept within a major version
    postgres = _version([str(POSTGRES_BIN / "postgres"), "--version"]).split(".")[0]
    assert _tag(services["postgres"]["image"]).split(".")[0] == postgres
    prometheus = _version([tool("promtool"), "--version"])
    assert _tag(services["prometheus"]["image"]) == f"v{prometheus}"
    pins = {name: pin.version for name, pin in read_lock(REPO / "requirements.lock").items()}
    dockerfile = (COMPOSE / "mlflow.Dockerfile").read_text()
    assert f"ghcr.io/mlflow/mlflow:v{pins['mlflow']}\n" in dockerfile
    assert _tag(services["mlflow"]["image"]) == pins["mlflow"]
    for package in ("psycopg2-binary", "boto3"):
        assert f"{package}=={pins[package]}" in dockerfile


def test_the_alert_rules_are_kubernetes_own() -> None:
    kubernetes = yaml.safe_load((REPO / "k8s" / "base" / "rules.yaml").read_text())["spec"]
    assert yaml.safe_load((COMPOSE / "rules.yml").read_text()) == kubernetes
