"""Batch scoring (`mlship score`) against in-process prediction on the same rows.

The model is the pipeline's (models/, after `make pipeline`); the rows are the test split's
reviews repeated to --rows. Contenders, in one run on one core:
  - in-process: the whole table in memory, one `predict_proba` call (the ceiling);
  - mlship score: read, checked like a server request, scored and written chunk by chunk
    (CSV in, CSV out, and Parquet in, Parquet out), with the peak memory traced.
With --spark, on a standalone cluster of one-core workers on 127.0.0.1 (tests/spark_cluster.py),
the same rows as --files Parquet files, each run from session start to the output written:
  - mlship score --engine spark with 1 and with 2 workers (labels and probabilities, checked);
  - MLflow's `mlflow.pyfunc.spark_udf` on the same fitted pipeline saved as an MLflow
    scikit-learn model, 2 workers (labels only: pyfunc's predict);
with the peak resident memory of one worker's executor (its JVM and Python workers).

Usage: .venv/bin/python benchmarks/batch.py [--rows 200000] [--chunk-rows 10000]
       [--spark] [--files 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the server: one native thread

import pandas as pd

from mlship.batch.local import score_file
from mlship.pipeline.artifacts import TRUSTED_TYPES
from mlship.serving.model import load_directory

REPO = Path(__file__).resolve().parents[1]
Row = tuple[str, str, str, str]


def _spark_rows(rows: pd.DataFrame, model_dir: Path, files: int, folder: Path) -> list[Row]:
    """mlship on Spark (1 and 2 workers) and MLflow's spark_udf (2 workers), end to end."""
    import sys
    import threading

    import psutil

    sys.path.insert(0, str(REPO))
    from tests.spark_cluster import Cluster

    from mlship.batch.spark import SparkJob, score

    source = folder / "spark-in"
    source.mkdir()
    per_file = len(rows) // files + 1
    for i in range(files):
        rows.iloc[i * per_file : (i + 1) * per_file].to_parquet(source / f"part-{i:03d}.parquet")
    one_per_task = {"spark.sql.files.openCostInBytes": "1g"}

    def measured(run: Any, cluster: Cluster) -> tuple[float, float]:
        """Seconds of `run`, and the peak RSS (MB) of the first worker's executor tree."""
        peak, stop = [0.0], threading.Event()
        worker = psutil.Process(cluster.workers[0].pid)

        def sample() -> None:
            while not stop.is_set():
                try:
                    tree = [p for p in worker.children(recursive=True)]
                    peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree) / 1e6)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        return seconds, peak[0]

    table: list[Row] = []
    for workers in (1, 2):
        cluster = Cluster(folder / f"cluster-{workers}")
        cluster.folder.mkdir()
        try:
            cluster.start(workers)
            out = folder / f"mlship-{workers}"
            job = SparkJob(model_dir, "bench", str(source), str(out), cluster.url, one_per_task)
            seconds, peak = measured(lambda job=job: score(job), cluster)
            table.append(
                (
                    f"mlship score --engine spark, {workers} worker(s)",
                    f"{len(rows) / seconds:,.0f}",
                    f"{seconds:.2f}",
                    f"{peak:.0f} (RSS)",
                )
            )
            if workers == 2:
                url = cluster.url
                seconds, peak = measured(
                    lambda url=url: _spark_udf(url, model_dir, source, folder), cluster
                )
                table.append(
                    (
                        "MLflow spark_udf (pyfunc predict), 2 workers",
                        f"{len(rows) / seconds:,.0f}",
                        f"{seconds:.2f}",
                        f"{peak:.0f} (RSS)",
                    )
                )
        finally:
            cluster.stop()
    return table


def _spark_udf(master: str, model_dir: Path, source: Path, folder: Path) -> None:
    import sys

    import mlflow.pyfunc
    import mlflow.sklearn
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import struct

    served = load_directory(model_dir, "bench")
    saved = folder / "mlflow-model"
    if not saved.exists():
        mlflow.sklearn.save_model(served.model, saved, skops_trusted_types=list(TRUSTED_TYPES))
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master(master)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.files.openCostInBytes", "1g")
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .getOrCreate()
    )
    try:
        frame = spark.read.parquet(str(source))
        udf = mlflow.pyfunc.spark_udf(spark, str(saved), result_type="string")
        features = list(served.features.columns)
        scored = frame.withColumn("label", udf(struct(*features)))
        scored.write.parquet(str(folder / "mlflow-out"))
    finally:
        spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--spark", action="store_true", help="add the Spark contenders")
    parser.add_argument("--files", type=int, default=16, help="Parquet files for Spark")
    options = parser.parse_args()
    model_dir = REPO / "models"
    reviews = pd.read_parquet(REPO / "data/raw/test.parquet")[["review"]]
    rows = pd.concat([reviews] * (options.rows // len(reviews) + 1)).head(options.rows)
    served = load_directory(model_dir, "bench")
    print(
        f"{len(rows):,} rows of reviews, chunks of {options.chunk_rows:,}; model "
        f"{served.card.estimator}"
    )
    table: list[Row] = [("contender", "rows/s", "seconds", "peak MB")]
    started = time.perf_counter()
    served.model.predict_proba(rows)
    seconds = time.perf_counter() - started
    table.append(
        (
            "in-process predict_proba, whole table",
            f"{len(rows) / seconds:,.0f}",
            f"{seconds:.2f}",
            "-",
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        # with --spark, the one-process baseline on the same Parquet only (the run is long)
        for kind in ("parquet",) if options.spark else ("csv", "parquet"):
            source = Path(folder) / f"in.{kind}"
            if kind == "csv":
                rows.to_csv(source, index=False)
            else:
                rows.to_parquet(source, row_group_size=options.chunk_rows)
            target = Path(folder) / f"out.{kind}"
            started = time.perf_counter()
            score_file(model_dir, "bench", str(source), target, options.chunk_rows)
            seconds = time.perf_counter() - started
            tracemalloc.start()  # a second, traced run: tracing slows it down
            score_file(model_dir, "bench", str(source), target, options.chunk_rows)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            table.append(
                (
                    f"mlship score, {kind} in and out",
                    f"{len(rows) / seconds:,.0f}",
                    f"{seconds:.2f}",
                    f"{peak / 1e6:.0f}",
                )
            )
        if options.spark:
            table += _spark_rows(rows, model_dir, options.files, Path(folder))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
