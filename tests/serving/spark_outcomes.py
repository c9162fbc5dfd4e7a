"""What a Spark job's answers are compared with: `mlship score`'s for the same input, row by
row (tests/serving/test_spark.py and test_spark_images.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlship.batch.local import REASON, score_file
from mlship.batch.spark import REFUSED, SCORED

# (the scored rows, the refused rows or None), indexed by the input's `id` column
Outcome = tuple[pd.DataFrame, pd.DataFrame | None]


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    # CSV cells reach Spark as text, as read: the ids too
    return frame.astype({"id": int}).set_index("id").sort_index()


def local_outcome(model_dir: Path, name: str, source: Path, folder: Path) -> Outcome:
    """`mlship score` of `source` in one process."""
    scored = folder / f"local-{source.name}.parquet"
    score_file(model_dir, name, str(source), scored, 100)
    refused = scored.with_name(scored.name.removesuffix(".parquet") + ".refused.parquet")
    return by_id(pd.read_parquet(scored)), (
        by_id(pd.read_parquet(refused)) if refused.exists() else None
    )


def spark_outcome(output: Path) -> Outcome:
    """A Spark job's output folder, read back."""
    refused = output / f"outcome={REFUSED}"
    return by_id(pd.read_parquet(output / f"outcome={SCORED}")), (
        by_id(pd.read_parquet(refused)) if refused.exists() else None
    )


def assert_same_answers(found: Outcome, reference: Outcome, inputs: list[str], where: str) -> None:
    """Each row's answer and each refusal the same: labels and probabilities equal, predicted
    values to 1e-12 of their size (Spark batches rows another way than one process, and a
    regression's sums round differently in the last bits)."""
    (scored, refused), (expected, expected_refused) = found, reference
    answer_columns = [c for c in expected.columns if c not in inputs]
    assert answer_columns, expected.columns
    assert scored.index.tolist() == expected.index.tolist(), where
    for column in answer_columns:
        mine, theirs = scored[column], expected[column]
        if pd.api.types.is_float_dtype(theirs):
            difference = (mine.astype(float) - theirs).abs() / theirs.abs().clip(lower=1)
            assert difference.max() <= 1e-12, (where, column, difference.max())
        else:
            assert mine.astype(str).tolist() == theirs.astype(str).tolist(), (where, column)
    assert (refused is None) == (expected_refused is None), where
    if refused is not None and expected_refused is not None:
        assert refused.index.tolist() == expected_refused.index.tolist(), where
        assert refused[REASON].tolist() == expected_refused[REASON].tolist(), where
