"""Batch scoring on Apache Spark: `mlship score`'s checked scoring path, one partition at a time.

Each partition's rows reach the model through the same code as a server request and
`mlship score` (protocols.check_columns, then batch.local.answers on the warmed model), so the
answers are the same. A row that fails the checks is not scored: it goes to the refused rows
with the reason, and the job goes on (unless `fail_fast`).

The model directory travels once per executor (SparkContext.addFile) and is loaded once per
Python worker, which Spark reuses across tasks. The output is a Parquet folder partitioned by
`outcome=scored|refused`, plus `_mlship_manifest.json`. The data is written beside its final
path, moved into place, and only then is the manifest written into it — the single marker of a
complete output. On an object store a move is a copy, file by file, and a driver may die halfway:
what it leaves has no manifest, and a reader treats an output without one as absent
(`complete_output`). The manifest's `rows_read` is counted from the input, and a job whose output
holds fewer or more rows than it read fails. An existing output path is refused, never
overwritten.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlship import files
from mlship.batch.local import (
    OUTCOME,
    REASON,
    REFUSED,
    REFUSED_MARK,
    SCORED,
    WARNINGS,
    answers_columns,
    score_part,
)
from mlship.config.settings import Settings
from mlship.errors import InputError, ServiceError
from mlship.serving.model import ServedModel, load_directory
from mlship.serving.threads import VARIABLES as THREAD_VARIABLES

MANIFEST_FILE = "_mlship_manifest.json"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class SparkJob:
    model_dir: Path  # a model directory (a models:/ URI is staged into one first)
    model_name: str | None
    input: str  # a path, folder or glob of .parquet, .csv or .jsonl; local, s3a:// or gs://
    output: str  # a folder that must not exist yet
    master: str | None = None  # None: spark-submit's (Dataproc, the operator), else local[*]
    conf: Mapping[str, str] = field(default_factory=dict)
    rows_per_batch: int = 10_000  # rows per model call (Arrow batch)
    fail_fast: bool = False


@dataclass(frozen=True)
class InputFile:
    path: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """What a run read, scored and refused, with what model and where: written last."""

    rows_read: int
    rows_scored: int
    rows_refused: int
    model_name: str
    model_version: str
    model_sha256: str
    input: str
    inputs: list[InputFile]
    output: str
    master: str
    application_id: str
    spark_version: str
    started_at: str
    wall_seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        raw = json.loads(path.read_text())
        raw["inputs"] = [InputFile(**f) for f in raw["inputs"]]
        return cls(**raw)


def _kind(location: str) -> str:
    lowered = location.rstrip("/").lower()
    for kind, suffixes in (
        ("parquet", (".parquet", ".pq")),
        ("csv", (".csv", ".csv.gz")),
        ("json", (".jsonl", ".jsonl.gz", ".json")),
    ):
        if lowered.endswith(suffixes):
            return kind
    return "parquet"  # a folder, as Spark and Hive write them


def submitted() -> bool:
    """Whether this Python runs under spark-submit (Dataproc, the Spark operator, a cluster's
    own launcher): its JVM then holds the master and the settings it was given."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def master_of(job: SparkJob) -> str | None:
    """The master to ask for: the job's, else spark-submit's (None), else local[*]."""
    return job.master or (None if submitted() else "local[*]")


def session_conf(job: SparkJob) -> dict[str, str]:
    """Spark settings: the job's own win over these defaults."""
    conf = {
        "spark.app.name": "mlship score",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(job.rows_per_batch),
        "spark.python.worker.reuse": "true",
        # one native thread per Python worker: Spark runs one per core already
        **{f"spark.executorEnv.{name}": "1" for name in THREAD_VARIABLES},
    }
    master = master_of(job) or ""  # under spark-submit: settings for its cluster, not ours
    host = master.removeprefix("spark://").split(":")[0]
    if master.startswith("local") or host in LOCAL_HOSTS:
        # everything on this machine: this Python on the workers, the driver on loopback
        conf |= {
            "spark.pyspark.python": sys.executable,
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
        }
    if any(p.startswith("s3a://") for p in (job.input, job.output)):
        conf["spark.jars.packages"] = f"org.apache.hadoop:hadoop-aws:{hadoop_version()}"
    return conf | dict(job.conf)


def hadoop_version() -> str:
    """The Hadoop release pyspark bundles: hadoop-aws must match it exactly."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    for jar in jars.glob("hadoop-client-api-*.jar"):
        return jar.stem.removeprefix("hadoop-client-api-")
    raise InputError(f"no hadoop-client-api jar in {jars}: cannot choose hadoop-aws for s3a://")


def _start(job: SparkJob) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise InputError(
            "--engine spark needs pyspark: install mlship[spark] (or use --engine local)"
        ) from error
    for name in THREAD_VARIABLES:  # local mode: the Python workers inherit the driver's
        os.environ.setdefault(name, "1")
    conf = session_conf(job)
    if "spark.pyspark.python" in conf:  # a session started from Python reads the variable
        os.environ["PYSPARK_PYTHON"] = conf["spark.pyspark.python"]
    if conf.get("spark.driver.bindAddress") in LOCAL_HOSTS:  # and its block manager this one
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    master = master_of(job)
    builder = SparkSession.builder if master is None else SparkSession.builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # Py4J and the JVM's own failures: no master, no Java
        where = master or "the master spark-submit was given"
        raise ServiceError(f"Spark did not start on {where}: {error}") from error
    spark.sparkContext.setLogLevel("ERROR")  # failures reach the user as our own errors
    return spark


def score(job: SparkJob, progress: Any = None) -> Manifest:
    """Score `job.input` into `job.output` on Spark; see the module's docstring."""
    served = load_directory(job.model_dir, job.model_name)  # refuses a bad model up front
    started, started_at = time.perf_counter(), _utc_now()
    spark = _start(job)
    try:
        with tempfile.TemporaryDirectory(prefix="mlship-spark-") as scratch:
            return _run(spark, job, served, Path(scratch), started, started_at, progress)
    finally:
        spark.stop()


def _run(
    spark: Any,
    job: SparkJob,
    served: ServedModel,
    scratch: Path,
    started: float,
    started_at: str,
    progress: Any,
) -> Manifest:
    from pyspark.errors import AnalysisException

    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()

    def hadoop_path(location: str) -> tuple[Any, Any]:
        path = jvm.org.apache.hadoop.fs.Path(location)
        return path, path.getFileSystem(hadoop_conf)

    try:
        final, fs = hadoop_path(job.output)
    except Exception as error:  # Py4J's: e.g. no S3A class, as the JVM started without it
        missing = re.search(r"ClassNotFoundException: Class (\S+) not found", str(error))
        if missing is None:
            raise
        raise ServiceError(
            f"{job.output}: this Spark has no {missing[1]}: a file system's jars join the "
            "class path only when the JVM starts, and this process started one without them; "
            "run the job in a process of its own (the mlship command does)"
        ) from error
    if fs.exists(final):
        incomplete = not fs.exists(jvm.org.apache.hadoop.fs.Path(final, MANIFEST_FILE))
        why = " without a manifest: the remains of a job that did not finish" if incomplete else ""
        raise InputError(f"{job.output}: already exists{why}; remove it or choose another --output")
    app_id = spark.sparkContext.applicationId
    staging, _ = hadoop_path(f"{job.output.rstrip('/')}.mlship-staging-{app_id}")
    try:
        frame = _read(spark, job)
    except AnalysisException as error:
        raise InputError(f"{job.input}: cannot read it: {_first_line(error)}") from error
    schema = _output_schema(frame.schema, served)
    # a folder ships only in local mode: an archive, unpacked once on each executor (the
    # driver serves it from where it is, so it stays until the session stops)
    archive = shutil.make_archive(f"{scratch}/model-{app_id}", "zip", job.model_dir)
    spark.sparkContext.addArchive(archive)
    spec = _PartitionSpec(Path(archive).name, job.model_name, job.fail_fast)
    scored = frame.mapInPandas(lambda batches: _score_batches(batches, spec), schema)
    if progress is not None:
        where = spark.sparkContext.master
        progress(f"scoring {job.input} on {where} (application {app_id}) ...")
    moved = False
    try:
        scored.write.partitionBy(OUTCOME).parquet(staging.toString())
        counts = {
            row[OUTCOME]: int(row["count"])
            for row in spark.read.parquet(staging.toString()).groupBy(OUTCOME).count().collect()
        }
        if not counts:
            raise InputError(f"{job.input}: the table has no rows")
        rows_read = frame.count()  # from the input, not the output: lost rows show
        written = sum(counts.values())
        if written != rows_read:
            raise ServiceError(
                f"the job read {rows_read} rows and wrote {written}: output not committed"
            )
        inputs = [InputFile(f, _size(*hadoop_path(f))) for f in frame.inputFiles()]
        manifest = Manifest(
            rows_read=rows_read,
            rows_scored=counts.get(SCORED, 0),
            rows_refused=counts.get(REFUSED, 0),
            model_name=served.name,
            model_version=served.version,
            model_sha256=files.tree_sha256(job.model_dir),
            input=job.input,
            inputs=inputs,
            output=job.output,
            master=spark.sparkContext.master,
            application_id=app_id,
            spark_version=spark.version,
            started_at=started_at,
            wall_seconds=round(time.perf_counter() - started, 3),
        )
        # the data first (a copy on object stores, which may stop halfway), the manifest last
        moved = fs.rename(staging, final)
        if not moved:
            raise ServiceError(f"could not move the finished output into {job.output}")
        out = fs.create(jvm.org.apache.hadoop.fs.Path(final, MANIFEST_FILE), False)
        out.write(bytearray(manifest.to_json().encode()))
        out.close()
    except Exception as error:
        fs.delete(staging, True)
        if moved:
            fs.delete(final, True)  # moved but not marked complete: not an output
        if isinstance(error, InputError | ServiceError):
            raise
        raise _job_failure(error) from error
    return manifest


def complete_output(path: Path) -> Manifest | None:
    """The manifest of a finished output at `path` (a local folder), or None when it has
    none: then it is not an output — absent, or what a job that died left — and must not be
    read."""
    marker = path / MANIFEST_FILE
    return Manifest.read(marker) if marker.is_file() else None


def _size(path: Any, fs: Any) -> int:
    return int(fs.getFileStatus(path).getLen())


def _job_failure(error: Exception) -> InputError | ServiceError:
    text = str(error)
    if REFUSED_MARK in text:  # fail-fast: the first refused row, as the task raised it
        reason = text.split(REFUSED_MARK, 1)[1].splitlines()[0]
        return InputError(f"a row was refused (--fail-fast): {reason}")
    return ServiceError(f"the Spark job failed: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:500]


def _read(spark: Any, job: SparkJob) -> Any:
    reader = spark.read
    kind = _kind(job.input)
    if kind == "csv":  # every column as text: numbers are judged row by row, as the server does
        return reader.option("header", True).option("inferSchema", False).csv(job.input)
    if kind == "json":
        return reader.json(job.input)
    return reader.parquet(job.input)


def _output_schema(schema: Any, served: ServedModel) -> Any:
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    texts = ("label", WARNINGS, REASON, OUTCOME)
    added = [
        StructField(name, StringType() if name in texts else DoubleType())
        for name in [*answers_columns(served), REASON, OUTCOME]
    ]
    clash = sorted({f.name for f in added} & set(schema.fieldNames()))
    if clash:
        raise InputError(f"the input has columns the answers are written to: {clash}; rename them")
    missing = [c for c in served.features.columns if c not in schema.fieldNames()]
    required = [c for c in missing if c not in served.features.optional]
    if required:
        raise InputError(f"the input lacks the model's feature column(s) {required}")
    return StructType([*schema.fields, *added])


# --- on the executors ---------------------------------------------------------------------


@dataclass(frozen=True)
class _PartitionSpec:
    model_folder: str  # the model archive's name among the files the job shipped
    model_name: str | None
    fail_fast: bool


_LOADED: dict[str, ServedModel] = {}  # per Python worker, which Spark reuses across tasks


def _served(spec: _PartitionSpec) -> ServedModel:
    if spec.model_folder not in _LOADED:
        from pyspark import SparkFiles

        served = load_directory(Path(SparkFiles.get(spec.model_folder)), spec.model_name)
        served.warm()
        _LOADED[spec.model_folder] = served
    return _LOADED[spec.model_folder]


def _score_batches(batches: Iterator[pd.DataFrame], spec: _PartitionSpec) -> Iterator[pd.DataFrame]:
    served = _served(spec)
    for part in batches:
        yield score_part(served, part, spec.fail_fast)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def staged_model(settings: Settings, model: str, folder: Path) -> Path:
    """The model as a directory the job can ship: a directory as it is, a models:/ URI staged
    into `folder` (loaded and checked as the server loads it)."""
    if not model.startswith("models:/"):
        if not Path(model).is_dir():
            raise InputError(f"{model}: no such model directory (or give a models:/ URI)")
        return Path(model)
    from mlship.stages.ship import stage_registry_uri

    stage_registry_uri(settings, model, folder)
    return folder
