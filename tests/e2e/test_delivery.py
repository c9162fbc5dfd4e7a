"""cd.yml executed: act runs the real workflow file on this host for a push to main, both
jobs in order — the delivery from tests to staging, then production — with the real DVC
remote, MLflow store, Docker engine and registry, and kubectl against the real cluster of
tests/kube: the image the job built and pushed is pulled by the node and its pods serve
the released model in both environments, to clients coming through each environment's
Gateway (Traefik). Production is deployed as cd.yml says, with `--canary`: a canary pod
given 10 % then 50 % of the Gateway's traffic (driven by the deploy's own load, there being
no clients here), judged by a Prometheus that discovers the pods, then stable promoted. What
cannot run here is stood in for: the Google
and Docker login actions (tests/ci/act_stand_ins), trivy's vulnerability database (a
stand-in trivy answering "no findings"), and the GitHub API, which names the release
manager who approved the `production` environment.
act does not hold a job for its environment's reviewers: the approval is the fake API's
answer, read by `make promote` as GitHub's own would be."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlship.ship.delivery import STEPS
from tests.ci.act import STAND_INS, TOKEN, act, commit, copy_repository
from tests.e2e.conftest import remove_image
from tests.fake_api import fake_api
from tests.integration.team_stack import mlflow_server
from tests.kube.cluster import CACHE, Cluster
from tests.kube.conftest import App, app_in
from tests.kube.fixtures import Images
from tests.kube.scrape import scraping
from tests.unit.ship.ci.test_github import FakeGitHub

pytestmark = [pytest.mark.docker, pytest.mark.kube]
BASE_IMAGE = "python:3.11-slim-bookworm"  # the Dockerfile's default
POOL = "workloadIdentityPools/github"
ACCOUNT = "delivery@acme-ml.iam.gserviceaccount.com"
VARIABLES = {  # the repository's `vars`, as docs/ci/github-actions.md sets them up
    "GCP_REGION": "europe-west4",
    "GCP_PROJECT": "acme-ml",
    "ARTIFACT_REPOSITORY": "models",
    "GCP_WORKLOAD_IDENTITY_PROVIDER": f"projects/123/locations/global/{POOL}/providers/acme",
    "GCP_SERVICE_ACCOUNT": ACCOUNT,
    "GKE_CLUSTER": "ml",
    "GKE_LOCATION": "europe-west4",
    "PRODUCTION_URL": "https://models.acme.example",
}


@contextmanager
def _environments(cluster: Cluster, images: Images) -> Iterator[tuple[Path, dict[str, App]]]:
    """mlship-staging and mlship-production as their admin sets them up (their overlays, on
    the image running before this release, trusting the CI's key, each Gateway served), and
    one CI identity bound in both, as on GKE: its kubeconfig, and the apps."""
    with ExitStack() as stack:
        apps = {
            env: stack.enter_context(
                app_in(
                    cluster,
                    f"overlays/{env}",
                    f"mlship-{env}",
                    str(images.running),
                    images.trusted_keys,
                )
            )
            for env in ("staging", "production")
        }
        yield _bound(cluster), apps


def _bound(cluster: Cluster) -> Path:
    cluster.kubectl(
        "-n",
        "mlship-production",
        "create",
        "rolebinding",
        "staging-deployer",
        "--role=mlship-deployer",
        "--serviceaccount=mlship-staging:mlship-deployer",
    )
    return cluster.service_account_config("mlship-staging", "mlship-deployer")


def test_cd_yml_delivers_to_staging_then_production_with_the_approvers_name(
    tmp_path: Path,
    engine: Any,
    registry: str,
    cluster: Cluster,
    gateway_api: None,
    images: Images,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo, branch="main")
    # each job has its own checkout: the DVC remote and the MLflow store are the team's
    config = repo / ".dvc" / "config"
    config.write_text(config.read_text().replace("../dvc-remote", str(tmp_path / "dvc-remote")))
    # the canary's evidence read every 3 s rather than 10: the same verdicts, sooner
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  look_seconds: 10\n", "  look_seconds: 3\n"))
    commit(repo)
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "acme/shop"}})
    )
    github = FakeGitHub(TOKEN)
    github.approvals = [
        {
            "state": "approved",
            "user": {"login": "release-manager"},
            "environments": [{"name": "production"}],
        }
    ]
    store = tmp_path / "mlflow"
    store.mkdir()
    release = tmp_path / "artifacts" / "release"
    try:
        # the team's MLflow server: the jobs share it, as they would on GitHub; production's
        # canary is judged by a Prometheus that discovers its pods, on traffic the deploy
        # sends through the production Gateway (no clients here)
        with (
            _environments(cluster, images) as (deployer, apps),
            scraping(cluster, "mlship-production", tmp_path / "prometheus") as prometheus,
            mlflow_server(store, f"sqlite:///{store}/mlflow.db", str(store / "artifacts")) as url,
            fake_api(github.answer) as api,
        ):
            github.url = api.url
            run = act(
                repo,
                "push",
                event,
                ".github/workflows/cd.yml",
                variables=VARIABLES
                | {
                    "MLFLOW_TRACKING_URI": url,
                    "MLSHIP_TRUSTED_KEYS": images.trusted_keys.read_text(),
                    "MLSHIP_PROMETHEUS_URL": prometheus.url,
                    "MLSHIP_CANARY_SETTLE_SECONDS": "6",
                    "MLSHIP_CANARY_LOAD_URL": apps["production"].gateway.url,
                },
                secrets={"MLSHIP_SIGNING_KEY": images.signing_key.read_text()},
                env={
                    "GITHUB_API_URL": api.url,
                    "GITHUB_REPOSITORY": "acme/shop",
                    "GITHUB_RUN_ID": "99",
                    # the test registry instead of the Artifact Registry path cd.yml composes
                    "MLSHIP_REGISTRY": registry,
                    "MLSHIP_BASE_IMAGE": os.environ.get("MLSHIP_BASE_IMAGE", BASE_IMAGE),
                    "ACT_KUBECONFIG": str(deployer),  # for the GKE credentials stand-in
                },
                path_first=(CACHE, STAND_INS / "bin"),
                timeout=2400,
            )
            assert run.artifacts / "release" == release
            _check_delivery(run.succeeded(), run.stand_in_log.read_text(), release, tmp_path, url)
            # what the cluster runs now, read from it: the release, in both environments,
            # its pods Ready and serving the released model to clients through the Gateway
            image = json.loads((release / "reports/image.json").read_text())["references"][0]
            for env, app in apps.items():
                running = app.kubectl(
                    "get",
                    "deployment/mlship",
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}",
                )
                assert running.stdout == f"{image} 2", env
                served = httpx.get(f"{app.gateway.url}/model", timeout=10).json()
                assert (served["name"], served["version"]) == ("reviews", "1"), env
            # production went through a canary judged on its own pods' figures, then stable
            production = json.loads(
                (release.parent / "production" / "deploy-production.json").read_text()
            )
            steps = {step["name"]: step for step in production["steps"]}
            for weight in ("canary 10%", "canary 50%"):
                detail = steps[weight]["detail"]
                assert steps[weight]["ok"] and detail.startswith("promote after"), detail
                assert "errors within" in detail, detail
            assert steps["all traffic to stable, canary removed"]["ok"]
            split = apps["production"].kubectl(
                "get", "httproute/mlship", "-o", "jsonpath={.spec.rules[0].backendRefs[*].weight}"
            )
            assert split.stdout == "100 0"
            canary = apps["production"].kubectl("get", "deployment/mlship-canary", check=False)
            assert canary.returncode != 0 and "NotFound" in canary.stderr
    finally:
        if (release / "reports/image.json").is_file():
            built = json.loads((release / "reports/image.json").read_text())
            for reference in built["references"]:
                remove_image(engine, reference)


def _check_delivery(
    ran: list[str], stand_ins: str, release: Path, tmp_path: Path, tracking_uri: str
) -> None:
    # every stage, in delivery.STEPS' order, across the two jobs
    assert ran == [stage.command for stage in STEPS if stage.command is not None]
    # the Google auth's token reached the docker login; each job got the cluster's credentials
    assert (
        f"login oauth2accesstoken@europe-west4-docker.pkg.dev with stand-in-token-for-{ACCOUNT}"
        in stand_ins
    )
    assert stand_ins.count("gke-credentials ml in europe-west4") == 2
    # cd.yml turned the vulnerability gate on: the push had the image's SBOM scanned
    scans = [line for line in stand_ins.splitlines() if line.startswith("trivy sbom")]
    assert len(scans) == 1 and "HIGH,CRITICAL" in scans[0] and scans[0].endswith("sbom.cdx.json")

    # the outputs went to the DVC remote, the image to the registry; production got both
    reports = release / "reports"
    built = json.loads((reports / "image.json").read_text())
    assert any((tmp_path / "dvc-remote").rglob("*")), "dvc push stored nothing"
    assert built["pushed"] and built["references"][0].endswith("-m1")
    # both environments run the image, and the model moved to @champion with its approver
    for report_file in (
        reports / "deploy-staging.json",
        release.parent / "production" / "deploy-production.json",
    ):
        report = json.loads(report_file.read_text())
        assert report["ok"] and report["image"] == built["references"][0], report
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    champion = client.get_model_version_by_alias("reviews", "champion")
    assert str(champion.version) == "1"
    assert champion.tags["mlship.approved_by"] == "release-manager"
    assert champion.tags["mlship.gate"] == "passed"
    assert champion.tags["mlship.deployed.production"] == built["references"][0]
    # and the version names the pushed image by digest and its SBOM by sha256
    assert champion.tags["mlship.ship.image"].endswith(f"@{built['digest']}")
    assert champion.tags["mlship.sbom_sha256"] == built["sbom_sha256"]
    # signed at registration with the CI's key; the signature went beside the image, and
    # production's deploy (which requires one) checked it before touching the cluster
    signed = champion.tags["mlship.signed_model_sha256"]
    assert built["signature_reference"].endswith(".model-sig")
    production = json.loads((release.parent / "production" / "deploy-production.json").read_text())
    verified = production["steps"][0]
    assert verified["name"] == "verify model" and verified["ok"], verified
    assert signed[:16] in verified["detail"] and "passed gate" in verified["detail"]
