"""Batch scoring (`mlship score`) against in-process prediction on the same rows.

The model is the pipeline's (models/, after `make pipeline`); the rows are the test split's
reviews repeated to --rows. Contenders, in one run on one core:
  - in-process: the whole table in memory, one `predict_proba` call (the ceiling);
  - mlship score: read, checked like a server request, scored and written chunk by chunk
    (CSV in, CSV out, and Parquet in, Parquet out), with the peak memory traced.

Usage: .venv/bin/python benchmarks/batch.py [--rows 200000] [--chunk-rows 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the server: one native thread

import pandas as pd

from mlship.batch.local import score_file
from mlship.serving.model import load_directory

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    options = parser.parse_args()
    model_dir = REPO / "models"
    reviews = pd.read_parquet(REPO / "data/raw/test.parquet")[["review"]]
    rows = pd.concat([reviews] * (options.rows // len(reviews) + 1)).head(options.rows)
    served = load_directory(model_dir, "bench")
    print(
        f"{len(rows):,} rows of reviews, chunks of {options.chunk_rows:,}; model "
        f"{served.card.estimator}"
    )
    table = [("contender", "rows/s", "seconds", "peak MB traced")]
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
        for kind in ("csv", "parquet"):
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
