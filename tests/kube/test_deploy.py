"""`mlship deploy` against the real control plane, as the CI deployer (its RBAC role): a
rollout that succeeds and is smoke-tested through the API server's service proxy to a real
mlship server; rollouts that fail — pods that never turn Ready (the progress deadline),
the wrong model version, a re-deploy of the running image — end on the recorded image,
verified by reading the cluster; the API server stopped mid-rollout and started again; an
unreachable cluster changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import raw_params, text_frame, write_dvc_file
from tests.kube.cluster import Cluster
from tests.kube.conftest import IMAGE, App

pytestmark = pytest.mark.kube
NEXT = IMAGE.replace("0123456789ab", "fedcba987654")  # the same model version, a new build
UNREADY = NEXT.replace("/reviews:", "/unready/reviews:")  # pods of this image never turn Ready


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """What `mlship deploy` reads: params, dvc.yaml's paths, the model card, a test row, and
    an MLflow store where version 1 of `reviews` is registered."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params()))
    model = tmp_path / "models"
    model.mkdir()
    (model / "model_card.json").write_text('{"features": {"text": ["review"]}, "target": "s"}')
    text_frame(2).to_parquet(tmp_path / "test.parquet")
    write_dvc_file(tmp_path, model_dir=model, test=tmp_path / "test.parquet")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    client.create_registered_model("reviews")
    client.create_model_version("reviews", str(tmp_path))
    return tmp_path


def _deploy(app: App, project: Path, image: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("mlship")),
        "deploy",
        "--env",
        "staging",
        "--namespace",
        app.namespace,
        "--image",
        image,
        "--timeout",
        "40",
        *extra,
    ]
    env = app.env() | {"MLSHIP_TRACKING_URI": f"sqlite:///{project}/mlflow.db"}
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _report(project: Path) -> dict[str, object]:
    return json.loads((project / "reports/deploy-staging.json").read_text())


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


def test_a_rollout_is_smoke_tested_through_the_service_and_recorded(
    app: App, project: Path
) -> None:
    done = _deploy(app, project, NEXT)
    assert done.returncode == 0, done.stderr
    # the cluster runs it: the Deployment, a new ReplicaSet, every replica Ready
    assert app.image() == NEXT and _revisions(app) == [IMAGE, NEXT]
    ready = app.kubectl("get", "deployment/mlship", "-o", "jsonpath={.status.readyReplicas}")
    assert ready.stdout == "2"
    # the smoke test reached the real server behind the Service's endpoints
    steps = {step["name"]: step for step in _report(project)["steps"]}  # type: ignore[union-attr]
    assert steps["smoke"]["ok"] and "/model version 1" in steps["smoke"]["detail"]
    assert "/predict -> " in steps["smoke"]["detail"]
    # and the registered version records where it runs
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project}/mlflow.db")
    assert client.get_model_version("reviews", "1").tags["mlship.deployed.staging"] == NEXT


def test_pods_that_never_turn_ready_end_back_on_the_previous_replicaset(
    app: App, project: Path
) -> None:
    started = time.monotonic()
    done = _deploy(app, project, UNREADY)
    # the rollout fails on the Deployment's progress deadline (15 s here), not the timeout
    assert done.returncode == 1 and f"rolled back: verified on {IMAGE}" in done.stderr
    report = _report(project)
    failed = [s for s in report["steps"] if not s["ok"]]  # type: ignore[union-attr]
    assert [s["name"] for s in failed] == ["rollout status"]
    assert "exceeded its progress deadline" in failed[0]["detail"]
    assert report["rolled_back"] is True and time.monotonic() - started < 120
    # verified by reading the cluster: the recorded image, all replicas Ready again
    assert app.image() == IMAGE
    app.kubectl("rollout", "status", "deployment/mlship", "--timeout=30s")
    assert _revisions(app)[-1] == IMAGE  # the old ReplicaSet is the newest revision again


def test_the_wrong_model_version_is_caught_by_the_smoke_test_and_undone(
    app: App, project: Path
) -> None:
    wrong = NEXT.replace("-m1", "-m2")  # the server behind the Service says version 1
    done = _deploy(app, project, wrong)
    assert done.returncode == 1 and f"rolled back: verified on {IMAGE}" in done.stderr
    assert "/model serves version 1, expected 2" in done.stderr
    assert app.image() == IMAGE


def test_redeploying_the_running_image_makes_no_revision_and_stays(app: App, project: Path) -> None:
    # given a second revision running, over the first
    assert _deploy(app, project, NEXT).returncode == 0
    # when the running image is deployed again with a wrong version (it fails its smoke)
    wrong_tag = _deploy(app, project, NEXT.replace("-m1", "-m3"))
    assert wrong_tag.returncode == 1
    # then the cluster still runs NEXT: `rollout undo` would have gone back to IMAGE
    assert app.image() == NEXT and _revisions(app)[-1] == NEXT


def test_an_api_server_stopped_mid_rollout_ends_verified_or_says_it_could_not(
    app: App, project: Path, cluster: Cluster
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
    done = _deploy(app, project, UNREADY)
    bounce.join()
    report = _report(project)
    running = app.image()
    assert done.returncode != 0
    if report["rolled_back"]:
        assert running == IMAGE and f"rolled back: verified on {IMAGE}" in done.stderr
    else:
        assert "NOT verified back" in done.stderr  # and it says so, naming the image


def test_a_hung_api_server_is_cut_off_and_the_deploy_reports_it(
    app: App, project: Path, cluster: Cluster
) -> None:
    """Every kubectl call has a timeout: a frozen API server (SIGSTOP) cannot hang a deploy."""
    apiserver = cluster.processes["kube-apiserver"]
    os.kill(apiserver.pid, signal.SIGSTOP)
    try:
        env_timeout = {"MLSHIP_KUBECTL_TIMEOUT_SECONDS": "5"}
        command = [
            str(Path(sys.executable).with_name("mlship")),
            "deploy",
            "--env",
            "staging",
            "--namespace",
            app.namespace,
            "--image",
            NEXT,
            "--timeout",
            "20",
        ]
        started = time.monotonic()
        done = subprocess.run(
            command,
            cwd=project,
            env=app.env() | env_timeout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert time.monotonic() - started < 60
    finally:
        os.kill(apiserver.pid, signal.SIGCONT)
    assert (
        done.returncode == 3 and "the cluster did not answer (nothing was changed)" in done.stderr
    )
    assert app.image() == IMAGE


def test_an_unreachable_cluster_changes_nothing(app: App, project: Path, tmp_path: Path) -> None:
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
        NEXT,
    ]
    done = subprocess.run(
        command,
        cwd=project,
        env=app.env() | {"KUBECONFIG": str(closed)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 3 and "the cluster did not answer" in done.stderr
    assert app.image() == IMAGE
