"""Batch scoring: files larger than one chunk, in CSV, Parquet and JSONL, with memory held
to about one chunk whatever the file's size; the same answers as one in-memory call."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

from mlship.batch.local import score_file
from mlship.errors import InputError
from mlship.serving.model import load_directory
from tests.conftest import text_frame

ROWS = 60_000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    frame = text_frame(ROWS // 2)
    return frame.assign(review=frame.review + " and a longer tail of words to read " * 3)


@pytest.mark.parametrize(
    ("source", "target"),
    [("in.csv", "out.csv"), ("in.parquet", "out.parquet"), ("in.jsonl", "out.csv")],
)
def test_every_row_is_scored_in_chunks_with_progress(
    big: pd.DataFrame, model_dir: Path, tmp_path: Path, source: str, target: str
) -> None:
    rows = big.head(5000)
    path = tmp_path / source
    if source.endswith(".csv"):
        rows.to_csv(path, index=False)
    elif source.endswith(".parquet"):
        rows.to_parquet(path, row_group_size=5000)
    else:
        rows.to_json(path, orient="records", lines=True)
    seen: list[int] = []
    done = score_file(model_dir, "m", str(path), tmp_path / target, 1200, seen.append)
    assert done.rows == 5000 and seen == [1200, 2400, 3600, 4800, 5000]
    scored = (
        pd.read_csv(tmp_path / target)
        if target.endswith(".csv")
        else pd.read_parquet(tmp_path / target)
    )
    served = load_directory(model_dir, "m")
    expected = served.predict({"review": rows.review.tolist()}).labels
    assert scored["label"].tolist() == list(expected)
    assert scored["review"].tolist() == rows.review.tolist()


def test_memory_stays_near_one_chunk_for_a_large_file(
    big: pd.DataFrame, model_dir: Path, tmp_path: Path
) -> None:
    big.to_csv(tmp_path / "big.csv", index=False)
    in_memory = int(big.memory_usage(deep=True).sum())
    tracemalloc.start()
    try:
        score_file(model_dir, "m", str(tmp_path / "big.csv"), tmp_path / "out.csv", 2000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(pd.read_csv(tmp_path / "out.csv", usecols=["label"])) == ROWS
    # the whole table in memory is about 9.6 MB; scoring it 2,000 rows at a time peaked at
    # 1.9 MB (numpy's and pandas' allocations included)
    assert in_memory > 8e6 and peak < in_memory / 4, (peak, in_memory)


def test_a_bad_row_late_in_the_file_is_kept_apart_with_its_reason(
    model_dir: Path, tmp_path: Path
) -> None:
    rows = text_frame(50).astype(object)
    rows.loc[97, "review"] = 5
    rows.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    done = score_file(model_dir, "m", str(tmp_path / "in.jsonl"), tmp_path / "out.parquet", 40)
    assert (done.rows, done.scored, done.refused) == (100, 99, 1)
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 99
    refused = pd.read_parquet(done.refused_path)
    assert refused["refused_reason"].tolist() == ["review: expected text, got int"]
    assert refused["score"].tolist() == [rows.loc[97, "score"]]  # the row as it was read


def test_with_fail_fast_a_bad_row_late_in_the_file_leaves_no_output(
    model_dir: Path, tmp_path: Path
) -> None:
    rows = text_frame(50).astype(object)
    rows.loc[97, "review"] = 5
    rows.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    with pytest.raises(InputError, match=r"rows 80\+.*review: expected text"):
        score_file(
            model_dir, "m", str(tmp_path / "in.jsonl"), tmp_path / "out.parquet", 40, None, True
        )
    assert not (tmp_path / "out.parquet").exists()
    assert not (tmp_path / "out.refused.parquet").exists()
