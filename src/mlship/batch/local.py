"""Batch scoring of a file: rows checked as the server checks a request, scored in chunks.

The input is read chunk by chunk (CSV and JSONL with pandas' chunked readers, Parquet by
record batches with pyarrow) and each scored chunk is appended to the output, so memory
holds one chunk whatever the file's size. A row the checks refuse (the data contract, as at
the server's door) is not scored: it goes, with its reason, to the refused file beside the
output (`<output>.refused.<suffix>`), as the Spark engine keeps it apart; `fail_fast`
stops at the first instead. Both files replace their paths only when every row is judged.
CSV cells are read as text for the text and categorical columns, and numbers are read from
text row by row, as on Spark, so both engines convert the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlship import files
from mlship.errors import InputError
from mlship.serving.errors import RequestError
from mlship.serving.model import Columns, ServedModel, load_directory
from mlship.serving.protocols import Checked, check_columns

Progress = Callable[[int], None]  # rows read so far
OUTCOME, REASON = "outcome", "refused_reason"
SCORED, REFUSED = "scored", "refused"
WARNINGS = "warnings"  # unknown categories a row was answered with, as column=value; ...
REFUSED_MARK = "mlship refused row: "  # how a fail-fast refusal is found in Spark's error


@dataclass(frozen=True)
class ScoredFile:
    rows: int  # read
    scored: int
    refused: int
    refused_path: Path | None  # where the refused rows went; None when there were none
    model: str
    version: str


def flags_unknown(served: ServedModel) -> bool:
    """Whether answers carry a warnings column: a categorical column flags unknown values."""
    return any(rule.unknown == "flag" for rule in served.features.categories.values())


def answers_columns(served: ServedModel) -> list[str]:
    """The columns `answers` adds, in order."""
    if not served.classification:
        found = ["prediction"]
    elif not served.has_probabilities:
        found = ["label"]
    else:
        found = ["label", "confidence", *(f"proba_{c}" for c in served.classes)]
    return found + ([WARNINGS] if flags_unknown(served) else [])


def answers(served: ServedModel, columns: Columns, checked: Checked | None = None) -> pd.DataFrame:
    """prediction (regression); label, and confidence with proba_<class> when the
    classifier has probabilities; the rows' unknown categories when the contract flags
    them."""
    scores = served.predict(columns)
    if scores.values is not None:
        scored = pd.DataFrame({"prediction": scores.values})
    else:
        scored = pd.DataFrame({"label": scores.labels})
    if scores.probabilities is not None:
        scored["confidence"] = scores.probabilities.max(axis=1)
        for i, label in enumerate(served.classes):
            scored[f"proba_{label}"] = scores.probabilities[:, i]
    if flags_unknown(served):
        found: list[str | None] = [None] * len(scored)
        for unknown in checked.unknown if checked is not None else ():
            said = f"{unknown.column}={unknown.value}"
            row = found[unknown.row]
            found[unknown.row] = said if row is None else f"{row}; {said}"
        scored[WARNINGS] = found
    return scored


def _text_to_number(value: Any) -> Any:
    """CSV cells arrive as text: a number where it reads as one, else the text, which the
    checks then refuse with the server's reason."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def score_part(served: ServedModel, part: pd.DataFrame, fail_fast: bool = False) -> pd.DataFrame:
    """The part's rows with their answers: scored rows with outcome `scored`, the others with
    outcome `refused` and the reason."""
    part = part.reset_index(drop=True)
    present = [c for c in served.features.columns if c in part.columns]
    columns: dict[str, list[Any]] = {}
    for name in present:
        values = [None if _missing(v) else v for v in part[name]]
        if name in served.features.numeric:
            values = [_text_to_number(v) for v in values]
        columns[name] = values
    reasons: list[str | None] = [None] * len(part)
    good = list(range(len(part)))
    whole = dict(columns)  # checked and converted as one; `columns` stays as read
    try:
        checked = check_columns(served.features, whole, "row", len(part))
        columns = whole
    except RequestError:  # which rows: each judged on its own, as a one-row request
        good, flagged = [], []
        kept: dict[str, list[Any]] = {name: [] for name in served.features.columns}
        for i in range(len(part)):
            row = {name: [values[i]] for name, values in columns.items()}
            try:
                alone = check_columns(served.features, row, "row", 1)
            except RequestError as error:
                reasons[i] = error.message.replace("row[0].", "", 1)
                if fail_fast:
                    shown = repr(part.iloc[i].to_dict())[:300]
                    raise InputError(f"{REFUSED_MARK}{reasons[i]}: {shown}") from None
                continue
            flagged += [replace(u, row=len(good)) for u in alone.unknown]
            good.append(i)
            for name, values in row.items():
                kept[name].extend(values)
        columns, checked = kept, Checked(len(good), tuple(flagged))
    result = part.copy()
    if good:
        scored = answers(served, columns, checked)
        scored.index = good
        result = result.join(scored)
    else:
        result = result.join(pd.DataFrame(columns=answers_columns(served), index=result.index))
    result[REASON] = reasons
    result[OUTCOME] = [SCORED if r is None else REFUSED for r in reasons]
    return result


def _missing(value: Any) -> bool:
    """A cell with no value: None, NaN, pandas' NA (a list or other object is a value)."""
    return (
        value is None
        or (isinstance(value, float | np.floating) and value != value)
        or (value is pd.NA)
    )


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


def read_chunks(location: str, rows: int, as_text: tuple[str, ...] = ()) -> Iterator[pd.DataFrame]:
    """The table in chunks of `rows`, never the whole of it at once; from CSV, the columns
    `as_text` are read as text (pandas would make numbers of "007" or "1")."""
    kind = _kind(location)
    try:
        if kind == "parquet":
            import fsspec
            import pyarrow.parquet as pq

            with fsspec.open(location, "rb") as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=rows):
                    yield batch.to_pandas()
        elif kind == "csv":
            text = dict.fromkeys(as_text, str)
            with pd.read_csv(location, chunksize=rows, dtype=text, keep_default_na=True) as reader:
                yield from reader
        else:
            with pd.read_json(location, lines=True, chunksize=rows, dtype=False) as reader:
                yield from reader
    except FileNotFoundError as error:
        raise InputError(f"{location}: file not found") from error
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputError(f"{location}: cannot read it as a table: {error}") from error


class _Writer:
    """Appends chunks to a CSV (header once) or a Parquet file (one row group per chunk, the
    schema of the first, where a column with no values yet is text)."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self._parquet: Any = None
        self.rows = 0

    def write(self, chunk: pd.DataFrame) -> None:
        self.rows += len(chunk)
        if self.kind == "csv":
            chunk.to_csv(self.path, mode="a", header=not self.path.stat().st_size, index=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(chunk, preserve_index=False)
        if self._parquet is None:
            schema = pa.schema(
                [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            )
            self._parquet = pq.ParquetWriter(self.path, schema)
        try:
            self._parquet.write_table(table.cast(self._parquet.schema))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as error:
            raise InputError(f"a later chunk's columns differ from the first's: {error}") from error

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def refused_path(output_path: Path) -> Path:
    """Where the rows the checks refused go: beside the output, `<name>.refused.<suffix>`."""
    suffix = ".csv.gz" if output_path.name.endswith(".csv.gz") else output_path.suffix
    return output_path.with_name(output_path.name.removesuffix(suffix) + ".refused" + suffix)


def _check_paths(input_path: str, output_path: Path) -> str:
    """The output's kind; InputError for an output that would replace the input, is a
    folder, or cannot be written as a table."""
    if output_path.is_dir():
        raise InputError(f"{output_path}: is a folder; give the output file's path")
    out_kind = _kind(str(output_path))
    if out_kind == "jsonl":
        raise InputError(f"{output_path}: write scores as .csv or .parquet")
    local_input = Path(input_path)
    for written in (output_path, refused_path(output_path)):
        exists = "://" not in input_path and local_input.exists() and written.exists()
        if exists and written.resolve() == local_input.resolve():
            raise InputError(
                f"--output {output_path}: would replace the input {input_path}; write the "
                "scores to another file"
            )
    return out_kind


def score_file(
    model_dir: Path,
    model_name: str | None,
    input_path: str,
    output_path: Path,
    chunk_rows: int,
    progress: Progress | None = None,
    fail_fast: bool = False,
) -> ScoredFile:
    """Every input row judged as a request: the scored ones with their answers (see
    `answers`) in `output_path`; the refused ones with their reason in the refused file
    beside it (`refused_path`), or with `fail_fast` an InputError at the first. Neither
    file is left behind unless the whole input was read."""
    served = load_directory(model_dir, model_name)
    served.warm()
    out_kind = _check_paths(input_path, output_path)
    text_columns = served.features.text + served.features.categorical
    added = [*answers_columns(served), REASON, OUTCOME]
    done = 0
    refused_file = refused_path(output_path)
    with files.atomic_path(output_path) as temp, files.atomic_path(refused_file) as refused_temp:
        writer, refused = _Writer(temp, out_kind), _Writer(refused_temp, out_kind)
        try:
            for part in read_chunks(input_path, chunk_rows, text_columns):
                where = f"{input_path} rows {done}+"
                clash = sorted(set(added) & set(map(str, part.columns)))
                if clash:
                    raise InputError(
                        f"{input_path}: has column(s) {clash}, which the answers are written "
                        "to; rename or drop them"
                    )
                missing = [
                    c
                    for c in served.features.columns
                    if c not in part.columns and c not in served.features.optional
                ]
                if missing:
                    raise InputError(f"{where}: missing feature column(s) {missing}")
                try:
                    judged = score_part(served, part, fail_fast)
                except InputError as error:
                    raise InputError(f"{where}: {error}".replace(REFUSED_MARK, "")) from None
                outcome = judged.pop(OUTCOME)
                reason = judged.pop(REASON)
                writer.write(judged[outcome == SCORED])
                if (outcome == REFUSED).any():
                    kept = part.reset_index(drop=True)[outcome.to_numpy() == REFUSED]
                    refused.write(kept.assign(**{REASON: reason[outcome == REFUSED]}))
                done += len(part)
                if progress is not None:
                    progress(done)
        finally:
            writer.close()
            refused.close()
        if done == 0:
            raise InputError(f"{input_path}: the table has no rows")
    if refused.rows == 0:  # nothing refused: no file (nor an earlier run's)
        refused_file.unlink()
    return ScoredFile(
        done,
        writer.rows,
        refused.rows,
        refused_file if refused.rows else None,
        served.name,
        served.version,
    )
