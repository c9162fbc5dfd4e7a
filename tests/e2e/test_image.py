"""The image for real: build, push, pull back, run as production runs it, load-test it —
with the team's own model code (examples/custom: LightGBM after the team's transformer),
so the image must carry the code, LightGBM from the lock and the OpenMP runtime."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlship.ship import launch
from tests.e2e.conftest import REGISTRY, checkout, commit, remove_image, run
from tests.integration.conftest import BIN

pytestmark = pytest.mark.docker
# many minutes, four service calls and an international plan: a customer about to leave
CUSTOMER = {
    "state": "NJ",
    "area_code": "area_code_415",
    "international_plan": "yes",
    "voice_mail_plan": "no",
    "account_length": 100,
    "number_vmail_messages": 0,
    "total_day_minutes": 320.0,
    "total_day_calls": 100,
    "total_day_charge": 54.4,
    "total_eve_minutes": 250.0,
    "total_eve_calls": 100,
    "total_eve_charge": 21.25,
    "total_night_minutes": 200.0,
    "total_night_calls": 100,
    "total_night_charge": 9.0,
    "total_intl_minutes": 15.0,
    "total_intl_calls": 2,
    "total_intl_charge": 4.05,
    "number_customer_service_calls": 4,
}


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, registry: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A git checkout of the repo with the custom example's pipeline run in it."""
    root = tmp_path_factory.mktemp("e2e") / "repo"
    env = checkout(root, example="custom")
    commit(root, env)
    run(root, env, "dvc", "repro")
    yield root, env


def test_build_push_pull_run_and_load_test(
    project: tuple[Path, dict[str, str]], engine: Any
) -> None:
    root, env = project
    # when built and pushed
    run(root, env, str(BIN / "mlship"), "image", "build")
    run(root, env, str(BIN / "mlship"), "image", "push")
    built = json.loads((root / "reports/image.json").read_text())
    reference = built["references"][0]
    assert built["pushed"] and built["digest"].startswith("sha256:")
    git_sha = run(root, env, "git", "rev-parse", "HEAD").strip()
    assert reference == f"{REGISTRY}/churn:{git_sha[:12]}-mlocal"
    assert built["size_bytes"] < 600e6, built["size_bytes"]
    # and its SBOM lists what the image holds: Debian's packages, mlship and the model's
    # LightGBM; the registry keeps it beside the image as an artifact named after the digest
    sbom = root / "reports/sbom.cdx.json"
    assert hashlib.sha256(sbom.read_bytes()).hexdigest() == built["sbom_sha256"]
    components = json.loads(sbom.read_text())["components"]
    assert {c["purl"].split("/")[0] for c in components if "purl" in c} == {"pkg:deb", "pkg:pypi"}
    names = {c["name"].lower() for c in components}
    assert {"mlship", "lightgbm", "scikit-learn", "libgomp1"} <= names
    artifact = built["sbom_reference"]
    assert artifact == f"{REGISTRY}/churn:{built['digest'].replace(':', '-')}.sbom"
    manifest = httpx.get(
        f"http://{REGISTRY}/v2/churn/manifests/{artifact.rsplit(':', 1)[1]}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).json()
    assert [layer["digest"] for layer in manifest["layers"]] == [f"sha256:{built['sbom_sha256']}"]

    # then the registry serves it back
    for tagged in built["references"]:
        remove_image(engine, tagged)
    repository, tag = reference.rsplit(":", 1)
    pulled = engine.images.pull(repository, tag=tag)
    labels = pulled.labels
    assert labels["org.opencontainers.image.revision"] == git_sha
    assert labels["io.mlship.model.name"] == "churn"
    assert pulled.attrs["Config"]["User"] == "10001:10001"

    # when run as production runs it: non-root, read-only root filesystem, only /tmp writable
    port = launch.free_port()
    container = launch.run_container(engine, reference, port)
    try:
        url = f"http://127.0.0.1:{port}"
        launch.wait_ready(f"{url}/ready", 120, lambda: launch.container_alive(container))
        assert container.exec_run("id -u").output.decode().strip() == "10001"
        assert container.exec_run("touch /opt/model/x").exit_code != 0
        # then it answers, and /model matches the labels
        answer = httpx.post(f"{url}/predict", json=CUSTOMER)
        assert answer.status_code == 200 and answer.json()["label"] == "yes"
        model = httpx.get(f"{url}/model").json()
        assert model["git_sha"] == labels["org.opencontainers.image.revision"]
        assert model["version"] == labels["io.mlship.model.version"]
        assert model["run_id"] == labels["io.mlship.mlflow.run_id"]
        assert model["metrics"]["accuracy"] > 0.9
        # and the load-test gate passes against it
        run(root, env, str(BIN / "mlship"), "loadtest", "--url", url)
        report = json.loads((root / "reports/loadtest.json").read_text())
        assert report["passed"] and report["summary"]["failures"] == 0
        assert (root / "reports/junit/loadtest.xml").is_file()
        assert (root / "reports/loadtest.html").stat().st_size > 0
    finally:
        container.remove(force=True)
        for tagged in built["references"]:
            remove_image(engine, tagged)
