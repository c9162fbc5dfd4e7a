"""Batch scoring on Apache Spark (mlship score --engine spark): the same answers as scoring in
one process, bad rows kept apart with their reason, an output that is whole or absent, and a
standalone cluster (a master and two workers on 127.0.0.1, as processes) that loses a worker
mid-job and still scores every row exactly once, and scores files held on an S3 server through
s3a:// (hadoop-aws from Maven Central, cached by Ivy under ~/.ivy2.5.2 after the first run;
about 600 MB with the AWS SDK)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlship.batch.local import score_file
from mlship.batch.spark import (
    MANIFEST_FILE,
    REFUSED,
    SCORED,
    Manifest,
    SparkJob,
    score,
    score_part,
)
from mlship.config.params import parse_params
from mlship.config.settings import Settings
from mlship.errors import InputError
from mlship.paths import PipelinePaths
from mlship.serving.model import load_directory
from mlship.stages import pipeline
from tests.conftest import REPO, text_frame
from tests.projects import scratch_project
from tests.serving.spark_outcomes import assert_same_answers, local_outcome, spark_outcome
from tests.spark_cluster import Cluster, object_store
from tests.tools import unavailable

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:
    unavailable("Spark needs a Java runtime (.ci/run installs OpenJDK 17)", module=True)

ANSWERS = ["label", "confidence", "proba_great", "proba_other"]


def _rows(count: int) -> pd.DataFrame:
    frame = text_frame(count // 2).drop(columns="score").reset_index(drop=True)
    return frame.assign(id=range(len(frame)))


def _in_process(model_dir: Path, frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    source, target = tmp_path / "expected.parquet", tmp_path / "expected-out.parquet"
    frame.to_parquet(source)
    score_file(model_dir, "m", str(source), target, 1000)
    return pd.read_parquet(target).set_index("id")


def _check_answers(output: Path, expected: pd.DataFrame, refused_ids: list[int]) -> pd.DataFrame:
    """The scored rows' answers are `expected`'s, the refused rows are `refused_ids`; returns
    the refused rows."""
    # CSV cells are text, as read: the ids too
    scored, refused = (
        pd.read_parquet(output / f"outcome={outcome}")
        .astype({"id": int})
        .set_index("id")
        .sort_index()
        for outcome in (SCORED, REFUSED)
    )
    assert scored.index.tolist() == expected.index.tolist()
    assert scored.label.tolist() == expected.label.tolist()
    assert (scored[ANSWERS[1:]] - expected[ANSWERS[1:]]).abs().max().max() == 0
    assert refused.index.tolist() == refused_ids
    return refused


def test_a_partition_keeps_bad_rows_apart_with_the_servers_reason(model_dir: Path) -> None:
    served = load_directory(model_dir, "m")
    served.warm()
    part = pd.DataFrame({"review": ["great food", None, 7, "bad"], "id": [1, 2, 3, 4]})
    done = score_part(served, part)
    assert done.outcome.tolist() == [SCORED, REFUSED, REFUSED, SCORED]
    assert done.refused_reason[1] == "review: expected text, got NoneType"
    assert done.refused_reason[2] == "review: expected text, got int"
    assert done.label.isna().tolist() == [False, True, True, False]
    alone = score_part(served, part.iloc[[0, 3]])
    assert done.loc[[0, 3], ANSWERS].to_numpy().tolist() == alone[ANSWERS].to_numpy().tolist()
    with pytest.raises(InputError, match="mlship refused row: review: expected text"):
        score_part(served, part, fail_fast=True)


def test_spark_answers_every_row_as_one_process_does(model_dir: Path, tmp_path: Path) -> None:
    """Several files of each format; answers equal to `mlship score` in one process; the
    manifest counts what the output holds; a second run on the same output is refused."""
    frame = _rows(6000)
    frame.loc[[5, 4321], "review"] = None  # refused, not scored and not fatal
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, part in enumerate((frame.iloc[:2500], frame.iloc[2500:4000], frame.iloc[4000:])):
        part.to_parquet(inputs / f"part-{i}.parquet")
    csv = tmp_path / "csv"
    csv.mkdir()
    frame.iloc[:3000].to_csv(csv / "a.csv", index=False)
    frame.iloc[3000:].to_csv(csv / "b.csv", index=False)
    expected = _in_process(model_dir, frame.drop(index=[5, 4321]), tmp_path)

    for source in (str(inputs), f"{csv}/*.csv"):
        output = tmp_path / f"out-{len(source)}"
        job = SparkJob(model_dir, "m", source, str(output), "local[2]", rows_per_batch=1000)
        manifest = score(job)
        refused = _check_answers(output, expected, [5, 4321])
        assert set(refused.refused_reason) == {"review: expected text, got NoneType"}
        assert (manifest.rows_read, manifest.rows_scored, manifest.rows_refused) == (
            6000,
            5998,
            2,
        )
        assert len(manifest.inputs) in (2, 3) and all(f.bytes > 0 for f in manifest.inputs)
        assert manifest.model_name == "m" and manifest.application_id.startswith("local-")
        assert Manifest.read(output / MANIFEST_FILE) == manifest
        assert not list(tmp_path.glob("*.mlship-staging-*"))

    before = sorted(p.name for p in output.rglob("*"))
    with pytest.raises(InputError, match="already exists"):
        score(SparkJob(model_dir, "m", str(inputs), str(output), "local[1]"))
    assert sorted(p.name for p in output.rglob("*")) == before


def test_fail_fast_stops_at_a_bad_row_and_leaves_no_output(model_dir: Path, tmp_path: Path) -> None:
    frame = _rows(200)
    frame.loc[17, "review"] = None
    frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    output = tmp_path / "out"
    job = SparkJob(model_dir, "m", str(tmp_path / "in.jsonl"), str(output), "local[1]")
    with pytest.raises(InputError, match=r"refused \(--fail-fast\): review: expected text"):
        score(SparkJob(**{**job.__dict__, "fail_fast": True}))
    assert not output.exists() and not list(tmp_path.glob("*.mlship-staging-*"))


def test_the_cli_refuses_bad_flags_and_inputs(model_dir: Path, tmp_path: Path) -> None:
    mlship = [sys.executable, "-m", "mlship"]
    output = str(tmp_path / "o")
    base = ["score", "--engine", "spark", "--model", str(model_dir), "--output", output]
    bad_conf = subprocess.run(
        [*mlship, *base, "--input", str(tmp_path), "--conf", "spark.x"],
        capture_output=True,
        text=True,
    )
    assert bad_conf.returncode == 2 and "--conf 'spark.x': expected KEY=VALUE" in bad_conf.stderr
    pd.DataFrame({"other": ["x"]}).to_parquet(tmp_path / "wrong.parquet")
    wrong = subprocess.run(
        [*mlship, *base, "--input", str(tmp_path / "wrong.parquet"), "--master", "local[1]"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 2, wrong.stderr
    assert "lacks the model's feature column(s) ['review']" in wrong.stderr


def test_the_job_file_scores_under_spark_submit_with_its_master(
    model_dir: Path, tmp_path: Path
) -> None:
    """.ci/spark/score.py as Dataproc and the Spark operator start it: spark-submit holds the
    master and settings, the session takes them, the arguments are `mlship score`'s."""
    frame = _rows(300)
    frame.loc[3, "review"] = None
    frame.to_parquet(tmp_path / "in.parquet")
    spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "MLSHIP_MODEL_NAME": "m",
    }
    output = tmp_path / "out"
    command = [str(spark_submit), "--master", "local[2]", "--name", "nightly"]
    job = [str(REPO / ".ci" / "spark" / "score.py"), "--model", str(model_dir)]
    paths = ["--input", str(tmp_path / "in.parquet"), "--output", str(output)]
    done = subprocess.run(
        [*command, *job, *paths], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "299 rows scored, 1 refused" in done.stdout and "on local[2]" in done.stdout
    manifest = Manifest.read(output / MANIFEST_FILE)
    assert manifest.master == "local[2]" and manifest.rows_scored == 299
    again = subprocess.run(
        [*command, *job, *paths], env=env, capture_output=True, text=True, timeout=600
    )
    # spark-submit hands the Python driver's stderr on as its stdout
    assert again.returncode == 2 and "already exists" in again.stdout


# --- a standalone cluster -------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    found = Cluster(tmp_path / "cluster")
    found.folder.mkdir()
    try:
        found.start(workers=2)
        yield found
    finally:
        found.stop()


def test_a_worker_lost_mid_job_still_scores_every_row_once(
    model_dir: Path, tmp_path: Path, cluster: Cluster
) -> None:
    frame = _rows(40_000)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(40):
        frame.iloc[i * 1000 : (i + 1) * 1000].to_parquet(inputs / f"part-{i:02d}.parquet")
    output = tmp_path / "out"
    job = SparkJob(
        model_dir,
        "m",
        str(inputs),
        str(output),
        cluster.url,
        # a task per file (opening one costs more than a partition holds)
        {"spark.sql.files.openCostInBytes": "256m", "spark.task.maxFailures": "4"},
        rows_per_batch=500,
    )
    import threading

    done: list[Manifest | BaseException] = []

    def run() -> None:
        try:
            done.append(score(job))
        except BaseException as error:  # handed to the test's thread
            done.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # a task's output committed: the job is under way on both workers; then one is lost
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob("out.mlship-staging-*/**/part-*.parquet")):
        assert time.monotonic() < deadline and thread.is_alive(), done
        time.sleep(0.2)
    assert thread.is_alive()  # the job is not over
    cluster.kill_worker(0)
    thread.join(timeout=600)
    assert done and isinstance(done[0], Manifest), done
    scored = pd.read_parquet(output / f"outcome={SCORED}")
    assert len(scored) == 40_000 and sorted(scored.id) == list(range(40_000))
    assert done[0].rows_scored == 40_000 and done[0].rows_refused == 0
    assert cluster.alive_workers() == 1  # the job finished on the one left


def test_a_cluster_scores_files_on_an_s3_server_through_s3a(
    model_dir: Path, tmp_path: Path, cluster: Cluster
) -> None:
    """Input and output in a bucket, the workers reading and writing through hadoop-aws:
    every answer as in one process, the refused rows, the manifest in the bucket. Through the
    command, in a process of its own: hadoop-aws joins the JVM's class path only when the
    JVM starts, and this test process runs one already for the other tests."""
    frame = _rows(6000)
    frame.loc[[11, 5000], "review"] = None
    expected = _in_process(model_dir, frame.drop(index=[11, 5000]), tmp_path)
    with object_store(tmp_path, "tables") as store:
        bucket = store.client()
        for i in range(3):
            local = tmp_path / f"part-{i}.parquet"
            frame.iloc[i * 2000 : (i + 1) * 2000].to_parquet(local)
            bucket.upload_file(str(local), "tables", f"nightly/{local.name}")
        conf = [f"--conf={key}={value}" for key, value in store.s3a_conf().items()]
        command = [
            *(sys.executable, "-m", "mlship", "score", "--engine", "spark"),
            *("--model", str(model_dir), "--master", cluster.url, "--chunk-rows", "1000"),
            *("--input", "s3a://tables/nightly/*.parquet", "--output", "s3a://tables/scored"),
            *conf,
        ]
        env = {**os.environ, "MLSHIP_MODEL_NAME": "m"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 2 and "already exists" in again.stderr
        keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="tables")["Contents"]]
        assert not [k for k in keys if "mlship-staging" in k]
        written = tmp_path / "scored"
        for key in keys:
            if key.startswith("scored/") and not key.endswith("/"):
                (written / key).parent.mkdir(parents=True, exist_ok=True)
                bucket.download_file("tables", key, str(written / key))
    written = written / "scored"
    _check_answers(written, expected, [11, 5000])
    manifest = Manifest.read(written / MANIFEST_FILE)
    assert (manifest.rows_read, manifest.rows_scored, manifest.rows_refused) == (6000, 5998, 2)
    assert sorted(f.path.rsplit("/", 1)[1] for f in manifest.inputs) == [
        f"part-{i}.parquet" for i in range(3)
    ]
    assert manifest.application_id.startswith("app-") and manifest.master == cluster.url


def test_a_driver_killed_while_committing_to_s3_leaves_nothing_a_reader_would_take(
    model_dir: Path, tmp_path: Path
) -> None:
    """On s3a:// the move into place is a copy, object by object. The driver is killed
    (SIGKILL, with its JVM) as soon as the first object of the final output appears: what
    is left has no manifest — the data may be partial, never the marker — and a second run
    says what it found. The manifest is written last, so whatever the timing, the output is
    absent or partial without one, or whole with one."""
    frame = _rows(6000)
    with object_store(tmp_path, "tables") as store:
        bucket = store.client()
        for i in range(60):  # 60 files: a task and an output file each, a long copy
            local = tmp_path / f"part-{i:02}.parquet"
            frame.iloc[i * 100 : (i + 1) * 100].to_parquet(local)
            bucket.upload_file(str(local), "tables", f"nightly/{local.name}")
        conf = [f"--conf={key}={value}" for key, value in store.s3a_conf().items()]
        command = [
            *(sys.executable, "-m", "mlship", "score", "--engine", "spark"),
            *("--model", str(model_dir), "--master", "local[2]"),
            *("--input", "s3a://tables/nightly/*.parquet", "--output", "s3a://tables/scored"),
            *conf,
        ]
        env = {**os.environ, "MLSHIP_MODEL_NAME": "m"}
        job = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def final_keys() -> list[str]:
            listed = bucket.list_objects_v2(Bucket="tables", Prefix="scored/")
            return [o["Key"] for o in listed.get("Contents", [])]

        try:
            deadline = time.monotonic() + 600
            while not final_keys() and job.poll() is None:
                assert time.monotonic() < deadline, "the job never began its commit"
                time.sleep(0.02)
        finally:
            os.killpg(job.pid, 9)
            job.wait(timeout=60)
        left = final_keys()
        parts = [k for k in left if k.endswith(".parquet")]
        print(f"\nkilled with {len(parts)} of 60 output files copied")
        if f"scored/{MANIFEST_FILE}" in left:  # the kill came after the commit: whole
            assert len(parts) == 60, left
        else:  # partial (or only folder markers): refused as the remains it is
            again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            assert again.returncode == 2, again.stderr[-2000:]
            assert "without a manifest: the remains of a job that did not finish" in again.stderr


# --- every model kind -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["penguins", "regression"])
def example_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, pd.DataFrame]:
    """The example trained in a scratch project as `dvc repro` would: (its name, its model
    directory, its test split's feature columns with an id)."""
    root = scratch_project(tmp_path_factory.mktemp(request.param), request.param)
    params_file = root / "params.yaml"
    params = parse_params(yaml.safe_load(params_file.read_text()), params_file)
    paths = PipelinePaths.read(root / "dvc.yaml")
    settings = Settings(tracking_uri=f"sqlite:///{root}/mlflow.db", model_name=params.name)  # type: ignore[call-arg]
    with contextlib.chdir(root):
        pipeline.ingest(params, paths.train, paths.test, paths.ingest_report)
        pipeline.validate(params, paths.train, paths.test, paths.contract_json, paths.contract_md)
        pipeline.train(params, settings, paths.train, paths.model_dir)
    test = pd.read_parquet(root / paths.test).drop(columns=[params.data.target])
    return params.name, root / paths.model_dir, test.assign(id=range(len(test)))


def test_every_model_kind_answers_the_same_on_spark_from_csv_and_parquet(
    example_model: tuple[str, Path, pd.DataFrame], tmp_path: Path
) -> None:
    """The tabular example (categorical and numeric columns with gaps) and the regression
    one: each row's answer and each refusal the same from both engines and both formats —
    CSV cells, which Spark reads as text, converted as the local engine converts them."""
    name, model_dir, frame = example_model
    frame.to_parquet(tmp_path / "in.parquet")
    frame.to_csv(tmp_path / "in.csv", index=False)
    reference = local_outcome(model_dir, name, tmp_path / "in.parquet", tmp_path)
    from_csv = local_outcome(model_dir, name, tmp_path / "in.csv", tmp_path)
    assert_same_answers(from_csv, reference, list(frame.columns), "local in.csv")
    for source in ("in.parquet", "in.csv"):
        output = tmp_path / f"spark-{source}"
        manifest = score(SparkJob(model_dir, name, str(tmp_path / source), str(output), "local[2]"))
        assert manifest.rows_read == len(frame)
        found = spark_outcome(output)
        assert_same_answers(found, reference, list(frame.columns), f"spark {source}")
