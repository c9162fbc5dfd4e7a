"""Batch scoring of a file: rows checked as the server checks a request, scored in chunks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlship import files
from mlship.errors import InputError
from mlship.serving.model import Columns, ServedModel, load_directory
from mlship.serving.protocols import BadRequestError, check_columns


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


def score_file(
    model_dir: Path, model_name: str, input_path: str, output_path: Path, chunk_rows: int
) -> ScoredFile:
    """Every input row with its answers (see `answers`); a bad row names its column and
    index."""
    served = load_directory(model_dir, model_name)
    frame = files.read_table(input_path)
    missing = [c for c in served.features.text if c not in frame.columns]
    if missing:
        raise InputError(f"{input_path}: missing feature column(s) {missing}")
    chunks = []
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        records = part[[c for c in served.features.columns if c in part.columns]]
        columns = {c: [None if pd.isna(v) else v for v in records[c]] for c in records.columns}
        try:
            check_columns(served.features, columns, f"{input_path} rows {start}+", chunk_rows)
        except BadRequestError as error:
            raise InputError(error.message) from error
        chunks.append(pd.concat([part.reset_index(drop=True), answers(served, columns)], axis=1))
    result = pd.concat(chunks, ignore_index=True)
    files.write_with(output_path, lambda temp: result.to_csv(temp, index=False))
    return ScoredFile(len(result), served.name, served.version)
