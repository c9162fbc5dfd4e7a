"""Batch scoring of a file: rows checked as the server checks a request, scored in chunks.

The input is read chunk by chunk (CSV and JSONL with pandas' chunked readers, Parquet by
record batches with pyarrow) and each scored chunk is appended to the output, so memory
holds one chunk whatever the file's size. The output (CSV or Parquet, by its suffix)
replaces its path only when every row is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlship import files
from mlship.errors import InputError
from mlship.serving.errors import RequestError
from mlship.serving.model import Columns, ServedModel, load_directory
from mlship.serving.protocols import check_columns

Progress = Callable[[int], None]  # rows scored so far


@dataclass(frozen=True)
class ScoredFile:
    rows: int
    model: str
    version: str


def answers(served: ServedModel, columns: Columns) -> pd.DataFrame:
    """prediction (regression); label, and confidence with proba_<class> when the
    classifier has probabilities."""
    scores = served.predict(columns)
    if scores.values is not None:
        return pd.DataFrame({"prediction": scores.values})
    scored = pd.DataFrame({"label": scores.labels})
    if scores.probabilities is not None:
        scored["confidence"] = scores.probabilities.max(axis=1)
        for i, label in enumerate(served.classes):
            scored[f"proba_{label}"] = scores.probabilities[:, i]
    return scored


def _kind(location: str) -> str:
    lowered = location.lower()
    for kind, suffixes in (
        ("parquet", (".parquet", ".pq")),
        ("csv", (".csv", ".csv.gz")),
        ("jsonl", (".jsonl", ".jsonl.gz")),
    ):
        if lowered.endswith(suffixes):
            return kind
    raise InputError(f"{location}: unsupported file type; use .csv, .csv.gz, .parquet or .jsonl")


def read_chunks(location: str, rows: int) -> Iterator[pd.DataFrame]:
    """The table in chunks of `rows`, never the whole of it at once."""
    kind = _kind(location)
    try:
        if kind == "parquet":
            import fsspec
            import pyarrow.parquet as pq

            with fsspec.open(location, "rb") as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=rows):
                    yield batch.to_pandas()
        elif kind == "csv":
            with pd.read_csv(location, chunksize=rows) as reader:
                yield from reader
        else:
            with pd.read_json(location, lines=True, chunksize=rows, dtype=False) as reader:
                yield from reader
    except FileNotFoundError as error:
        raise InputError(f"{location}: file not found") from error
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{location}: cannot read it as a table: {error}") from error


class _Writer:
    """Appends scored chunks to a CSV (header once) or a Parquet file (one row group per
    chunk, the schema of the first)."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self._parquet: Any = None

    def write(self, chunk: pd.DataFrame) -> None:
        if self.kind == "csv":
            chunk.to_csv(self.path, mode="a", header=not self.path.stat().st_size, index=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(chunk, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.path, table.schema)
        try:
            self._parquet.write_table(table.cast(self._parquet.schema))
        except (pa.ArrowInvalid, ValueError) as error:
            raise InputError(f"a later chunk's columns differ from the first's: {error}") from error

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def score_file(
    model_dir: Path,
    model_name: str | None,
    input_path: str,
    output_path: Path,
    chunk_rows: int,
    progress: Progress | None = None,
) -> ScoredFile:
    """Every input row with its answers (see `answers`); a bad row names its column and
    index, and no output is left behind."""
    served = load_directory(model_dir, model_name)
    out_kind = _kind(str(output_path))
    if out_kind == "jsonl":
        raise InputError(f"{output_path}: write scores as .csv or .parquet")
    done = 0
    with files.atomic_path(output_path) as temp:
        writer = _Writer(temp, out_kind)
        try:
            for part in read_chunks(input_path, chunk_rows):
                writer.write(_scored(served, part, f"{input_path} rows {done}+", chunk_rows))
                done += len(part)
                if progress is not None:
                    progress(done)
        finally:
            writer.close()
        if done == 0:
            raise InputError(f"{input_path}: the table has no rows")
    return ScoredFile(done, served.name, served.version)


def _scored(served: ServedModel, part: pd.DataFrame, where: str, limit: int) -> pd.DataFrame:
    missing = [c for c in served.features.columns if c not in part.columns]
    if missing:
        raise InputError(f"{where}: missing feature column(s) {missing}")
    records = part[list(served.features.columns)]
    columns = {c: [None if pd.isna(v) else v for v in records[c]] for c in records.columns}
    try:
        check_columns(served.features, columns, where, limit)
    except RequestError as error:
        raise InputError(error.message) from error
    return pd.concat([part.reset_index(drop=True), answers(served, columns)], axis=1)
