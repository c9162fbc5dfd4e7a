"""`mlship deploy` against the real cluster, as the CI deployer (its RBAC role), with pods of
the session's serving image running on the real node: a rollout that succeeds is smoke-
tested through the Service and on each new pod, and reports each pod's time to Ready; the
rollouts that really fail — an image that cannot be pulled (ImagePullBackOff), a server
that exits at start (CrashLoopBackOff), a readiness probe that never passes, a pod no node
can take (Pending), the wrong model version — end on the previous ReplicaSet, verified by
reading the cluster, with the cause as the cluster tells it; a re-deploy of the running
image, an API server stopped mid-rollout or frozen, and an unreachable cluster change
nothing they should not. The images are signed with the session's CI key, which the
deployer and the servers trust: a forged or (for production) unsigned model is refused by
the deployer before the cluster is touched, and by the server if it reaches a pod anyway."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kube.cluster import Cluster
from tests.kube.conftest import PROGRESS_DEADLINE, App
from tests.kube.fixtures import Images, ServedImage
from tests.kube.node import POD_CIDR

pytestmark = pytest.mark.kube
SERVER = "app.kubernetes.io/component=server"


@pytest.fixture
def project(tmp_path: Path, served_image: ServedImage) -> Path:
    """What `mlship deploy` reads, from the checkout the image was built in: params,
    dvc.yaml's paths, the model card and a test row (the smoke request)."""
    source = served_image.project
    for name in ("params.yaml", "dvc.yaml", "models/model_card.json", "data/raw/test.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, tmp_path / name)
    return tmp_path


def _deploy(
    app: App,
    project: Path,
    served_image: ServedImage,
    image: Any,
    *extra: str,
    env_name: str = "staging",
) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("mlship")),
        "deploy",
        "--env",
        env_name,
        "--namespace",
        app.namespace,
        "--image",
        str(image),
        "--timeout",
        "120",
        *extra,
    ]
    env = app.env() | {
        "MLSHIP_TRACKING_URI": served_image.tracking_uri,
        "MLSHIP_TRUSTED_KEYS": str(served_image.trusted_keys),
    }
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=400, check=False
    )


def _report(project: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((project / "reports/deploy-staging.json").read_text())
    return found


def _revisions(app: App) -> list[str]:
    """The Deployment's ReplicaSets' images, by revision: what the controller recorded."""
    found = json.loads(app.kubectl("get", "replicasets", "-o", "json").stdout)["items"]
    found.sort(
        key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    )
    return [
        rs["spec"]["template"]["spec"]["containers"][0]["image"]
        for rs in found
        if rs["metadata"]["name"].startswith("mlship-")
    ]


def _failed(project: Path) -> dict[str, str]:
    return {s["name"]: s["detail"] for s in _report(project)["steps"] if not s["ok"]}


def _back_on(app: App, images: Images) -> None:
    """Verified by reading the cluster: the recorded image, every replica Ready, and the old
    ReplicaSet the newest revision again."""
    assert app.image() == str(images.running)
    app.kubectl("rollout", "status", "deployment/mlship", "--timeout=60s")
    assert _revisions(app)[-1] == str(images.running)


def test_a_rollout_runs_real_pods_is_smoke_tested_on_each_and_recorded(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    done = _deploy(app, project, served_image, images.next)
    assert done.returncode == 0, done.stderr
    # the cluster runs it: the Deployment, a new ReplicaSet, every replica Ready
    assert app.image() == str(images.next)
    assert _revisions(app) == [str(images.running), str(images.next)]
    ready = app.kubectl("get", "deployment/mlship", "-o", "jsonpath={.status.readyReplicas}")
    assert ready.stdout == "2"
    # the pods are real: each has its own address on the node's pod network, and the
    # Service's endpoints are those addresses
    pods = [p for p in app.pods(SERVER) if p["spec"]["containers"][0]["image"] == str(images.next)]
    addresses = {p["status"]["podIP"] for p in pods}
    assert len(addresses) == 2
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(POD_CIDR) for a in addresses)
    service = "kubernetes.io/service-name=mlship"
    slices = json.loads(app.kubectl("get", "endpointslices", "-l", service, "-o", "json").stdout)
    slices = slices["items"]
    served = {
        address
        for piece in slices
        for endpoint in piece["endpoints"]
        if endpoint["conditions"].get("ready")
        for address in endpoint["addresses"]
    }
    assert served == addresses
    # the smoke test reached the server behind the Service and each new pod's /model
    steps = {step["name"]: step for step in _report(project)["steps"]}
    assert steps["smoke"]["ok"] and "/model version 1" in steps["smoke"]["detail"]
    assert "/model on each new pod (2)" in steps["smoke"]["detail"]
    # and the report gives each new pod's time to Ready
    assert steps["pods ready"]["ok"]
    assert all(f"{p['metadata']['name']} " in steps["pods ready"]["detail"] for p in pods)
    print(f"\ntime to Ready: {steps['pods ready']['detail']}")
    # the pod spec runs as written: non-root with a read-only root filesystem, and the
    # server keeps its answers for feedback on the volume the manifest gives it
    address = sorted(addresses)[0]
    with httpx.Client(base_url=f"http://{address}:8000", timeout=10) as pod:
        answer = pod.post("/predict", json=served_image.card["example"])
        assert answer.status_code == 200, answer.text
        request_id = answer.headers["x-request-id"]
        said = pod.post("/feedback", json={"request_id": request_id, "label": "yes"})
        assert said.status_code == 200, said.text
        assert (
            'http_requests_total{method="POST",route="/predict",status="200"}'
            in pod.get("/metrics").text
        )
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=served_image.tracking_uri)
    tags = client.get_model_version("taxi", "1").tags
    assert tags["mlship.deployed.staging"] == str(images.next)


def test_the_deployer_refuses_a_forged_or_unsigned_model_before_touching_the_cluster(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    before = _revisions(app)
    # read from the image's layers through the registry API: the file that differs is named
    forged = _deploy(app, project, served_image, images.forged)
    assert forged.returncode == 2, forged.stderr
    assert f"refusing to deploy {images.forged}" in forged.stderr
    assert "model.skops differs from the signed model" in forged.stderr
    # production requires a signature: the image whose signature a layer deleted is refused
    unsigned = _deploy(app, project, served_image, images.unsigned, env_name="production")
    assert unsigned.returncode == 2, unsigned.stderr
    assert "the model is not signed, and the policy requires a signature" in unsigned.stderr
    # and the signed image passes the same check: the report's first step says so
    signed = _deploy(app, project, served_image, images.next)
    assert signed.returncode == 0, signed.stderr
    first = _report(project)["steps"][0]
    assert first["name"] == "verify model" and "passed gate" in first["detail"], first
    assert _revisions(app) == [*before, str(images.next)]  # the refused ones left no trace


def test_a_forged_model_deployed_around_the_deployer_is_never_served(
    app: App, images: Images
) -> None:
    """An admin's `kubectl set image`, no `mlship deploy`: the server's own check at start
    refuses the model and names the file; the running pods keep serving."""
    app.kubectl("set", "image", "deployment/mlship", f"server={images.forged}")

    def refused() -> str | None:
        for pod in app.pods(SERVER):
            if pod["spec"]["containers"][0]["image"] != str(images.forged):
                continue
            status = (pod["status"].get("containerStatuses") or [{}])[0]
            ended = status.get("lastState", {}).get("terminated") or status.get("state", {}).get(
                "terminated"
            )
            if ended:
                name = pod["metadata"]["name"]
                logs = app.kubectl("logs", name, "--previous", check=False)
                return (
                    (logs.stdout if logs.returncode == 0 else "")
                    + app.kubectl("logs", name, check=False).stdout
                    + f" exit {ended['exitCode']}"
                )
        return None

    deadline = time.monotonic() + 90
    said = None
    while said is None and time.monotonic() < deadline:
        said = refused()
        time.sleep(0.5)
    assert said is not None, "the forged model's pod never ended"
    assert "model.skops differs from the signed model" in said and "exit 2" in said, said
    assert all(
        p["status"].get("containerStatuses", [{}])[0].get("ready") is not True
        for p in app.pods(SERVER)
        if p["spec"]["containers"][0]["image"] == str(images.forged)
    )
    proxy = f"/api/v1/namespaces/{app.namespace}/services/mlship:http/proxy/model"
    served = json.loads(app.cluster.kubectl("get", "--raw", proxy).stdout)
    assert served["version"] == "1"  # the signed model's pods, still serving


def _undone(
    app: App, project: Path, served_image: ServedImage, images: Images, image: Any
) -> tuple[dict[str, str], float]:
    started = time.monotonic()
    done = _deploy(app, project, served_image, image)
    seconds = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert f"rolled back: verified on {images.running}" in done.stderr
    report = _report(project)
    assert report["rolled_back"] is True
    _back_on(app, images)
    failed = _failed(project)
    # the rollout failed on the Deployment's progress deadline, not on the deploy's timeout
    assert "exceeded its progress deadline" in failed["rollout status"]
    print(f"\n{image.tag}: undone and verified in {seconds:.1f} s: {failed['diagnose']}")
    return failed, seconds


def test_an_image_that_cannot_be_pulled_is_undone(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    failed, seconds = _undone(app, project, served_image, images, images.missing)
    assert "ImagePullBackOff" in failed["diagnose"] or "ErrImagePull" in failed["diagnose"]
    assert images.missing.tag in failed["diagnose"]
    assert seconds < PROGRESS_DEADLINE + 90


def test_a_server_that_exits_at_start_is_undone(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    failed, _ = _undone(app, project, served_image, images, images.refused)
    # the kubelet restarts it and backs off; the report says how it ended and why (at the
    # deadline a pod may be between exits: then its log line says it)
    assert (
        "CrashLoopBackOff" in failed["diagnose"]
        or "last exit 2" in failed["diagnose"]
        or "its last log line: error: cannot load the model" in failed["diagnose"]
    )
    assert "outside the trust policy" in failed["diagnose"]


def test_a_readiness_probe_that_never_passes_is_undone(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    failed, _ = _undone(app, project, served_image, images, images.never_ready)
    assert "running, not Ready" in failed["diagnose"]
    assert "Readiness probe failed" in failed["diagnose"] and "503" in failed["diagnose"]


def test_a_pod_no_node_can_take_is_undone(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    # given replicas that take most of the node's 2 cores: a third pod (the rollout's
    # surge) cannot be placed
    app.kubectl(
        "patch",
        "deployment/mlship",
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/template/spec/containers/0/resources/requests/cpu",'
        ' "value": "800m"}]',
    )
    app.kubectl("rollout", "status", "deployment/mlship", "--timeout=180s")
    revisions = _revisions(app)
    failed, _ = _undone(app, project, served_image, images, images.next)
    assert "Pending: Unschedulable" in failed["diagnose"]
    assert "Insufficient cpu" in failed["diagnose"]
    assert _revisions(app)[-1] == revisions[-1]


def test_the_wrong_model_version_is_caught_by_the_smoke_test_and_undone(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    done = _deploy(app, project, served_image, images.wrong_version)
    assert done.returncode == 1 and f"rolled back: verified on {images.running}" in done.stderr
    assert "/model serves version 1, expected 2" in done.stderr
    _back_on(app, images)


def test_redeploying_the_running_image_makes_no_revision_and_stays(
    app: App, project: Path, served_image: ServedImage, images: Images
) -> None:
    # given a second revision running, over the first
    assert _deploy(app, project, served_image, images.next).returncode == 0
    # when the running image is deployed again under a wrong version (it fails its smoke)
    again = images.next.tagged(images.next.tag.replace("-m1", "-m3"))
    from tests.kube.images import retag

    retag(images.next, again.tag)
    assert _deploy(app, project, served_image, again).returncode == 1
    # then the cluster still runs NEXT: `rollout undo` would have gone back to the first
    assert app.image() == str(images.next) and _revisions(app)[-1] == str(images.next)


def test_an_api_server_stopped_mid_rollout_ends_verified_or_says_it_could_not(
    app: App, project: Path, served_image: ServedImage, images: Images, cluster: Cluster
) -> None:
    """The API server is killed while `rollout status` waits, and started again seconds
    later: the deploy ends on a verified state, or reports plainly that it could not verify
    — it never claims a rollback it did not make."""

    def restart_soon() -> None:
        time.sleep(3)  # set image has gone through; rollout status is waiting
        cluster.stop_apiserver()
        time.sleep(8)
        cluster.start_apiserver()

    bounce = threading.Thread(target=restart_soon)
    bounce.start()
    done = _deploy(app, project, served_image, images.never_ready)
    bounce.join()
    report = _report(project)
    assert done.returncode != 0
    if report["rolled_back"]:
        assert app.image() == str(images.running)
        assert f"rolled back: verified on {images.running}" in done.stderr
    else:
        assert "NOT verified back" in done.stderr  # and it says so, naming the image


def test_a_hung_api_server_is_cut_off_and_the_deploy_reports_it(
    app: App, project: Path, served_image: ServedImage, images: Images, cluster: Cluster
) -> None:
    """Every kubectl call has a timeout: a frozen API server (SIGSTOP) cannot hang a deploy."""
    apiserver = cluster.processes["kube-apiserver"]
    os.kill(apiserver.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        command = [
            str(Path(sys.executable).with_name("mlship")),
            "deploy",
            "--env",
            "staging",
            "--namespace",
            app.namespace,
            "--image",
            str(images.next),
            "--timeout",
            "20",
        ]
        done = subprocess.run(
            command,
            cwd=project,
            env=app.env()
            | {
                "MLSHIP_KUBECTL_TIMEOUT_SECONDS": "5",
                "MLSHIP_TRACKING_URI": served_image.tracking_uri,
                "MLSHIP_TRUSTED_KEYS": str(served_image.trusted_keys),
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert time.monotonic() - started < 60
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)
    assert done.returncode == 3, done.stderr
    assert "the cluster did not answer (nothing was changed)" in done.stderr
    assert app.image() == str(images.running)


def test_an_unreachable_cluster_changes_nothing(
    app: App, project: Path, images: Images, served_image: ServedImage, tmp_path: Path
) -> None:
    closed = tmp_path / "closed.kubeconfig"
    closed.write_text(app.deployer.read_text().replace(app.cluster.server, "https://127.0.0.1:9"))
    command = [
        str(Path(sys.executable).with_name("mlship")),
        "deploy",
        "--env",
        "staging",
        "--namespace",
        app.namespace,
        "--image",
        str(images.next),
    ]
    done = subprocess.run(
        command,
        cwd=project,
        env=app.env()
        | {
            "KUBECONFIG": str(closed),
            "MLSHIP_TRACKING_URI": served_image.tracking_uri,
            "MLSHIP_TRUSTED_KEYS": str(served_image.trusted_keys),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 3 and "the cluster did not answer" in done.stderr
    assert app.image() == str(images.running)
