"""The nightly Spark scoring job as the CI systems run it: .ci/spark/dataproc-score.sh with
kubectl, docker and gcloud stand-ins that record their arguments (no Google Cloud here),
and the three schedules that call it. The job file itself runs under a real spark-submit in
tests/serving/test_spark.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from mlship.ship.ci import jenkins
from mlship.ship.lockfile import read_lock
from tests.conftest import REPO

SCRIPT = REPO / ".ci" / "spark" / "dataproc-score.sh"
SERVING = "europe-west1-docker.pkg.dev/p/mlship/shop@sha256:" + "ab" * 32
ENV = {
    "MLSHIP_GCP_PROJECT": "p",
    "MLSHIP_GCP_REGION": "europe-west1",
    "MLSHIP_SCORE_INPUT": "gs://t/nightly/2026-12-02/*.parquet",
    "MLSHIP_SCORE_OUTPUT": "gs://t/scored/2026-12-02-run-7",
    "MLSHIP_DATAPROC_SERVICE_ACCOUNT": "mlship-dataproc@p.iam.gserviceaccount.com",
}


def _stand_ins(folder: Path, image: str = SERVING, docker_fails: bool = False) -> Path:
    """kubectl answering with `image`, docker and gcloud recording each call in calls.log, and
    python3 recording its pip calls (pip install --target making the folder): the wheel cache
    (wheels/, MLSHIP_WHEEL_CACHE) holds the locked pyarrow already."""
    folder.mkdir(parents=True)
    log = folder / "calls.log"
    pyarrow = read_lock(REPO / "requirements.lock")["pyarrow"].version
    (folder / "wheels").mkdir()
    (folder / "wheels" / f"pyarrow-{pyarrow}-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    answers = {
        "kubectl": f"printf %s '{image}'",
        "docker": "exit 1" if docker_fails else ":",
        "python3": 'while [ $# -gt 1 ] && [ "$1" != --target ]; do shift; done\n'
        '[ "${1:-}" != --target ] || mkdir -p "$2"',
    }
    for name in ("kubectl", "docker", "gcloud", "python3"):
        tool = folder / name
        tool.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> {log}\n{answers.get(name, ":")}\n'
        )
        tool.chmod(0o755)
    return log


def _run(tmp_path: Path, env: dict[str, str], **stand_in: object) -> tuple[int, str, list[str]]:
    log = _stand_ins(tmp_path / "bin", **stand_in)  # type: ignore[arg-type]
    path = f"{tmp_path / 'bin'}:{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        env={
            "PATH": path,
            "HOME": str(tmp_path),
            "MLSHIP_WHEEL_CACHE": str(tmp_path / "bin" / "wheels"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls


def test_the_job_scores_with_a_container_built_from_the_image_production_runs(
    tmp_path: Path,
) -> None:
    code, output, calls = _run(tmp_path, ENV)
    assert code == 0, output
    assert [c.split()[0] for c in calls] == [
        "kubectl",
        *["python3"] * 3,
        "docker",
        "docker",
        "gcloud",
    ]
    assert "--namespace mlship-production get deployment mlship" in calls[0]
    # the locked pyarrow, hash-checked as pip downloads it, installed for the image's Python
    assert calls[2].startswith("python3 -m pip download --quiet --no-deps --require-hashes")
    assert "--python-version 3.11" in calls[2]
    assert calls[3].startswith("python3 -m pip install") and "/pyarrow-" in calls[3]
    batch_image = "europe-west1-docker.pkg.dev/p/mlship/mlship-dataproc:" + "ab" * 20
    build = calls[4].split()
    assert build[:4] == ["docker", "build", "--network", "host"]
    assert build[4:6] == ["--file", str(SCRIPT.parent / "dataproc.Dockerfile")]
    assert build[6:10] == ["--build-arg", f"SERVING_IMAGE={SERVING}", "--tag", batch_image]
    assert calls[5] == f"docker push {batch_image}"
    submit = calls[6]
    assert submit.startswith("gcloud dataproc batches submit pyspark score.py --project p")
    assert f"--container-image {batch_image}" in submit and "--version 3.0" in submit
    assert "--service-account mlship-dataproc@p.iam.gserviceaccount.com" in submit
    assert "--subnet" not in submit  # only when MLSHIP_DATAPROC_SUBNET is set
    assert submit.endswith(
        "-- --input gs://t/nightly/2026-12-02/*.parquet --output gs://t/scored/2026-12-02-run-7"
    )


def test_the_job_fetches_cluster_credentials_and_tags_by_tag_when_asked(tmp_path: Path) -> None:
    env = {**ENV, "MLSHIP_GKE_CLUSTER": "prod", "MLSHIP_DATAPROC_SUBNET": "batch"}
    code, output, calls = _run(tmp_path, env, image="registry.example/shop:v12")
    assert code == 0, output
    assert calls[0].startswith("gcloud container clusters get-credentials prod --project p")
    assert "mlship/mlship-dataproc:v12 " in calls[5]
    assert "--subnet batch" in calls[-1]


@pytest.mark.parametrize("missing", sorted(ENV))
def test_a_missing_setting_stops_the_job_naming_it(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    code, output, calls = _run(tmp_path, env)
    assert code != 0 and missing in output and calls == []


def test_no_production_deployment_or_a_failed_build_submits_nothing(tmp_path: Path) -> None:
    code, output, calls = _run(tmp_path / "a", ENV, image="")
    assert code == 1 and "deployment/mlship in mlship-production" in output
    assert [c.split()[0] for c in calls] == ["kubectl"]
    code, output, calls = _run(tmp_path / "b", ENV, docker_fails=True)
    assert code != 0 and not [c for c in calls if c.startswith("gcloud")]


def test_the_three_schedules_run_the_one_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "score-dataproc:" in makefile and "bash .ci/spark/dataproc-score.sh" in makefile
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "score.yml").read_text())
    assert workflow[True]["schedule"] and "workflow_dispatch" in workflow[True]
    steps = workflow["jobs"]["score"]["steps"]
    assert steps[-1]["run"] == "make score-dataproc"
    assert steps[-1]["env"]["MLSHIP_DATAPROC_SERVICE_ACCOUNT"]
    cloudbuild = REPO / ".ci" / "cloudbuild"
    build = yaml.safe_load((cloudbuild / "score.yaml").read_text())
    assert "bash .ci/spark/dataproc-score.sh" in build["steps"][-1]["args"][-1]
    assert "MLSHIP_GKE_CLUSTER=$_PRODUCTION_CLUSTER" in build["options"]["env"]
    trigger = yaml.safe_load((cloudbuild / "triggers" / "score.yaml").read_text())
    assert trigger["gitFileSource"]["path"] == ".ci/cloudbuild/score.yaml"
    job = yaml.safe_load((cloudbuild / "scheduler" / "score.yaml").read_text())
    assert job["httpTarget"]["uri"].endswith(f"/triggers/{trigger['name']}:run")
    source = (REPO / ".ci" / "jenkins" / "score.Jenkinsfile").read_text()
    root = jenkins.groovy_blocks(jenkins.groovy_leaves(source))
    assert "cron" in [w for _, w in root.find("triggers")[0].tokens()]
    assert any("bash .ci/spark/dataproc-score.sh" in s for s in jenkins.strings(root.tokens()))


def test_both_spark_images_carry_the_job_file_and_the_dataproc_one_runs_as_spark() -> None:
    dataproc, operator = (
        (REPO / ".ci" / "spark" / f"{target}.Dockerfile").read_text()
        for target in ("dataproc", "operator")
    )
    assert "COPY score.py /opt/mlship/score.py" in dataproc
    assert "COPY score.py entrypoint.sh /opt/mlship/" in operator
    assert "--uid 1099" in dataproc and "USER 1099:1099" in dataproc  # Dataproc's rule
    # Dataproc mounts Spark and Java: the image must hold neither
    instructions = [line for line in dataproc.splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if "spark/" in line or "java" in line.lower()]
    assert (
        "openjdk-17-jre-headless" in operator and "SPARK_HOME=/opt/spark-python/pyspark" in operator
    )


def test_build_refuses_an_unknown_target_and_a_missing_argument(tmp_path: Path) -> None:
    build = SCRIPT.parent / "build.sh"
    for args, message in (
        (["gpu", "serving:1", "out:1"], "no target 'gpu' (dataproc or operator)"),
        (["dataproc", "serving:1"], "usage: build.sh dataproc|operator SERVING_IMAGE TAG"),
    ):
        done = subprocess.run(["bash", str(build), *args], capture_output=True, text=True)
        assert done.returncode != 0 and message in done.stderr, done.stderr
