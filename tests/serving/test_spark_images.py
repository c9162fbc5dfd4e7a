"""The images production scores on Spark with, built from a serving image by
.ci/spark/build.sh and run as their platforms run them, each job's answers equal to
`mlship score`'s row by row (the tabular example: categorical and numeric columns with gaps):

- the Dataproc image with Spark and Java mounted into it at run time, as Dataproc Serverless
  mounts them (here: this machine's pyspark and OpenJDK 17), in local mode, then with its
  executors on a standalone worker in a second container of it;
- the operator image as Spark on Kubernetes starts its pods: a driver container
  (`entrypoint.sh driver`) and an executor container (`entrypoint.sh executor`) given the
  variables Spark sets on executor pods, which registers with the driver and runs its tasks.

Every container uses the host network; the standalone master runs on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlship.batch.spark import MANIFEST_FILE, Manifest
from mlship.ship.launch import free_port
from tests.conftest import REPO
from tests.e2e.conftest import checkout, commit, remove_image, run
from tests.integration.conftest import BIN
from tests.serving.spark_outcomes import assert_same_answers, local_outcome, spark_outcome
from tests.spark_cluster import Cluster
from tests.tools import unavailable

pyspark = pytest.importorskip("pyspark")
pytestmark = pytest.mark.docker
if shutil.which("java") is None:
    unavailable("Spark needs a Java runtime (.ci/run installs OpenJDK 17)", module=True)

BUILD = REPO / ".ci" / "spark" / "build.sh"
JOB = "/opt/mlship/score.py"
DATAPROC_SPARK = "/usr/lib/spark"  # where Dataproc mounts Spark


@dataclass(frozen=True)
class Built:
    serving: str  # the serving image (examples/penguins' model)
    dataproc: str
    operator: str
    model_dir: Path  # the model the serving image holds
    model_name: str
    inputs: Path  # the test split's feature columns with an id, as in.csv and in.parquet
    columns: list[str]


def _docker(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, registry: str, engine: Any) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("spark-images") / "repo"
    env = checkout(root, example="penguins")
    commit(root, env)
    run(root, env, "dvc", "repro", "train")
    run(root, env, str(BIN / "mlship"), "image", "build")
    references = json.loads((root / "reports/image.json").read_text())["references"]
    serving = references[0]
    tags = {target: f"mlship-{target}:test-{os.getpid()}" for target in ("dataproc", "operator")}
    try:
        for target, tag in tags.items():
            run(REPO, env, "bash", str(BUILD), target, serving, tag)
        test = pd.read_parquet(root / "data/raw/test.parquet")
        frame = test.drop(columns=["species"]).assign(id=range(len(test)))
        inputs = tmp_path_factory.mktemp("spark-inputs")
        frame.to_csv(inputs / "in.csv", index=False)
        frame.to_parquet(inputs / "in.parquet")
        inputs.chmod(0o755)
        card = json.loads((root / "models/model_card.json").read_text())
        yield Built(
            serving,
            tags["dataproc"],
            tags["operator"],
            root / "models",
            card["name"],
            inputs,
            list(frame.columns),
        )
    finally:
        for tag in [*tags.values(), *references]:
            remove_image(engine, tag)


def _outputs(tmp_path: Path) -> Path:
    """A folder the images' users (1099, 185) may write their output into."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


def _volumes(read_only: dict[Path, str], writable: dict[Path, str] | None = None) -> list[str]:
    return [
        *(arg for host, inside in read_only.items() for arg in ("-v", f"{host}:{inside}:ro")),
        *(arg for host, inside in (writable or {}).items() for arg in ("-v", f"{host}:{inside}")),
    ]


def _spark_and_java() -> tuple[dict[Path, str], list[str]]:
    """What Dataproc mounts, from this machine, and the variables that point at it: Spark
    (pyspark's wheel is a Spark distribution: bin/, jars/, python/lib/) and Java (Debian's
    JDK, with the security settings its conf/ links to under /etc)."""
    java_home = Path(shutil.which("java") or "java").resolve().parents[1]
    linked = {
        Path(*target.parts[:3])  # /etc/java-17-openjdk
        for link in (java_home / "conf").rglob("*")
        if link.is_symlink() and not (target := link.resolve()).is_relative_to(java_home)
    }
    mounts = {Path(pyspark.__file__).parent: DATAPROC_SPARK, java_home: str(java_home)}
    mounts |= {folder: str(folder) for folder in linked}
    return mounts, ["-e", f"JAVA_HOME={java_home}", "-e", f"SPARK_HOME={DATAPROC_SPARK}"]


def _check(output: Path, built: Built, master: str, where: str) -> None:
    """The job's output: a manifest and the answers `mlship score` gives the same rows."""
    assert output.is_dir(), where
    manifest = Manifest.read(output / MANIFEST_FILE)
    scratch = output.parent.parent
    reference = local_outcome(built.model_dir, built.model_name, built.inputs / "in.csv", scratch)
    refused = 0 if reference[1] is None else len(reference[1])
    assert manifest.rows_read == len(reference[0]) + refused, where
    assert (manifest.master, manifest.model_name) == (master, built.model_name), where
    assert_same_answers(spark_outcome(output), reference, built.columns, where)


def _failed(done: subprocess.CompletedProcess[str]) -> str:
    return f"{done.args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_the_dataproc_image_scores_with_the_spark_and_java_dataproc_mounts(
    built: Built, tmp_path: Path
) -> None:
    # neither Spark nor Java in the image (Dataproc forbids both); the serving image as lean
    # as it was: no pyarrow
    java = _docker("run", "--rm", built.dataproc, "sh", "-c", "command -v java || echo none")
    assert java.stdout.strip() == "none", _failed(java)
    lean = _docker("run", "--rm", "--entrypoint", "python", built.serving, "-c", "import pyarrow")
    assert "No module named 'pyarrow'" in lean.stderr, _failed(lean)

    outputs = _outputs(tmp_path)
    mounts, variables = _spark_and_java()
    volumes = _volumes(mounts | {built.inputs: "/data/in"}, {outputs: "/data/out"})
    container = ["--network", "host", "-e", "SPARK_LOCAL_IP=127.0.0.1", *variables, *volumes]
    submit = f"{DATAPROC_SPARK}/bin/spark-submit"
    # local mode, from CSV
    done = _docker(
        "run", "--rm", *container, built.dataproc,
        submit, "--master", "local[2]", JOB, "--input", "/data/in/in.csv",
        "--output", "/data/out/local",
    )  # fmt: skip
    assert done.returncode == 0, _failed(done)
    _check(outputs / "local", built, "local[2]", "dataproc image, local mode")

    # a standalone master here and its one worker in a container of the image: the driver's
    # executors run in the image, as Dataproc runs them; from Parquet
    cluster = Cluster(tmp_path / "cluster")
    cluster.folder.mkdir()
    worker = f"mlship-spark-worker-{os.getpid()}"
    try:
        cluster.start(workers=0)
        started = _docker(
            "run", "--detach", "--rm", "--name", worker, *container, built.dataproc,
            f"{DATAPROC_SPARK}/bin/spark-class", "org.apache.spark.deploy.worker.Worker",
            "--host", "127.0.0.1", "--cores", "2", "--memory", "1g",
            "--work-dir", "/tmp/spark-work", cluster.url,
        )  # fmt: skip
        assert started.returncode == 0, _failed(started)
        cluster.wait_for_workers(1)
        done = _docker(
            "run", "--rm", *container, built.dataproc,
            submit, "--master", cluster.url, JOB, "--input", "/data/in/in.parquet",
            "--output", "/data/out/cluster",
        )  # fmt: skip
        assert done.returncode == 0, _failed(done) + _docker("logs", worker).stderr[-3000:]
    finally:
        _docker("rm", "--force", worker)
        cluster.stop()
    _check(outputs / "cluster", built, cluster.url, "dataproc image, standalone cluster")


def _application(ui: int, driver: subprocess.Popen[str]) -> dict[str, Any]:
    """The driver's application as its UI describes it, once it runs."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            found: list[dict[str, Any]] = httpx.get(
                f"http://127.0.0.1:{ui}/api/v1/applications", timeout=2
            ).json()
        except (httpx.HTTPError, json.JSONDecodeError):
            found = []
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"the driver's UI never answered (exit code {driver.poll()})")


def test_the_operator_image_runs_as_spark_on_kubernetes_starts_its_pods(
    built: Built, tmp_path: Path
) -> None:
    # an executor pod without Spark's variables is refused, naming the first missing
    refused = _docker("run", "--rm", built.operator, "executor")
    assert refused.returncode == 2 and "SPARK_DRIVER_URL is not set" in refused.stderr

    outputs = _outputs(tmp_path)
    volumes = _volumes({built.inputs: "/data/in"}, {outputs: "/data/out"})
    # the master only hands the driver an application id: the executor comes as on
    # Kubernetes, started by hand with what Spark's pod would carry
    cluster = Cluster(tmp_path / "cluster")
    cluster.folder.mkdir()
    port, ui = free_port(), free_port()
    driver_name = f"mlship-spark-driver-{os.getpid()}"
    executor_name = f"mlship-spark-executor-{os.getpid()}"
    command = [
        "docker", "run", "--rm", "--name", driver_name, "--network", "host", *volumes,
        "-e", "SPARK_DRIVER_BIND_ADDRESS=127.0.0.1", built.operator, "driver",
        "--master", cluster.url, "--conf", f"spark.driver.port={port}",
        "--conf", "spark.driver.host=127.0.0.1", "--conf", f"spark.ui.port={ui}",
        f"local://{JOB}", "--input", "/data/in/in.csv", "--output", "/data/out/operator",
    ]  # fmt: skip
    driver: subprocess.Popen[str] | None = None
    try:
        cluster.start(workers=0)
        driver = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        app = _application(ui, driver)
        environment = httpx.get(
            f"http://127.0.0.1:{ui}/api/v1/applications/{app['id']}/environment", timeout=5
        ).json()
        properties = dict(environment["sparkProperties"])
        # Spark's Kubernetes backend hands an executor the driver's executor Java options
        # and its port settings as SPARK_JAVA_OPT_<n>
        java_options = [
            *shlex.split(properties.get("spark.executor.extraJavaOptions", "")),
            f"-Dspark.driver.port={port}",
        ]
        pod = {
            "SPARK_DRIVER_URL": f"spark://CoarseGrainedScheduler@127.0.0.1:{port}",
            "SPARK_EXECUTOR_ID": "1",
            "SPARK_EXECUTOR_CORES": "2",
            "SPARK_EXECUTOR_MEMORY": "1g",
            "SPARK_APPLICATION_ID": app["id"],
            "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
            "SPARK_EXECUTOR_POD_NAME": executor_name,
            "SPARK_RESOURCE_PROFILE_ID": "0",
            **{f"SPARK_JAVA_OPT_{i}": option for i, option in enumerate(java_options)},
        }
        variables = [arg for name, value in pod.items() for arg in ("-e", f"{name}={value}")]
        executor = _docker(
            "run", "--detach", "--rm", "--name", executor_name, "--network", "host",
            *volumes, *variables, built.operator, "executor",
        )  # fmt: skip
        assert executor.returncode == 0, _failed(executor)
        log, _ = driver.communicate(timeout=600)
        assert driver.returncode == 0, log[-4000:] + _docker("logs", executor_name).stderr[-3000:]
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        _docker("rm", "--force", driver_name, executor_name)
        cluster.stop()
    _check(outputs / "operator", built, cluster.url, "operator image, driver and executor pods")
