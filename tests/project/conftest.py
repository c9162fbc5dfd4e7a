"""The project's own checks run on the repository as it is now: its params.yaml, its data
source and its model code (`make check`, each CI's test stage, on every push).

The model is fitted on a sample of the declared source, so these checks take seconds
whatever the data's size; the full training, the data contract and the gate run in the
pipeline's stages after them. Add your own tests beside these files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlship.config.params import Params, load_params
from mlship.pipeline import data
from mlship.pipeline.train import fit
from tests.conftest import REPO

SAMPLE_ROWS = 1000  # train rows the checks fit on; the test sample is a quarter of it


@pytest.fixture(scope="session", autouse=True)
def at_the_project_root() -> Iterator[None]:
    """Relative paths in params.yaml and the team's packages resolve from the project."""
    before = Path.cwd()
    os.chdir(REPO)
    yield
    os.chdir(before)


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def splits(params: Params) -> data.Ingested:
    """The declared source, ingested as the pipeline does: columns, labels, split, duplicates."""
    source = params.data.test_source
    return data.ingest(
        params.data,
        data.load_source(params.data.source),
        data.load_source(source) if source else None,
    )


def _sample(frame: pd.DataFrame, rows: int, params: Params) -> pd.DataFrame:
    """Up to `rows` rows, seeded; for classification every class keeps its share (and at
    least a few rows, so that each class is seen)."""
    if len(frame) <= rows:
        return frame
    if params.data.task == "regression":
        return frame.sample(rows, random_state=params.data.seed)
    share = rows / len(frame)
    kept = [
        group.sample(
            min(len(group), max(5, round(len(group) * share))), random_state=params.data.seed
        )
        for _, group in frame.groupby(params.data.target)
    ]
    return pd.concat(kept).sort_index()


@pytest.fixture(scope="session")
def train_sample(splits: data.Ingested, params: Params) -> pd.DataFrame:
    return _sample(splits.train, SAMPLE_ROWS, params)


@pytest.fixture(scope="session")
def test_sample(splits: data.Ingested, params: Params) -> pd.DataFrame:
    return _sample(splits.test, SAMPLE_ROWS // 4, params)


@pytest.fixture(scope="session")
def fitted(params: Params, train_sample: pd.DataFrame) -> Any:
    return fit(params, train_sample)
