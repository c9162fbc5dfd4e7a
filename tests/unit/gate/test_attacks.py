"""The evasion attack on numeric columns (ART's HopSkipJump) gives the same verdict on every
run with the same seed, and cannot run for ever: its queries are budgeted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from mlship.config.params import DataParams, EvasionParams
from mlship.gate import attacks

DATA = DataParams(
    source="tests",
    categorical_columns=["company"],
    numeric_columns=["distance", "hour"],
    target="tip",
)


@pytest.fixture(scope="module")
def trips() -> tuple[Pipeline, pd.DataFrame]:
    """A tree model (answers in steps, as XGBoost's) on trips whose tip depends on both
    numbers, with some noise."""
    rng = np.random.default_rng(0)
    rows = 2000
    frame = pd.DataFrame(
        {
            "distance": rng.exponential(3, rows),
            "hour": rng.integers(0, 24, rows).astype(float),
            "company": rng.choice(["a", "b", "c"], rows),
        }
    )
    tipped = (frame.distance > 2) & (frame.hour > 6) | (rng.random(rows) < 0.05)
    frame["tip"] = np.where(tipped, "yes", "no")
    features = ColumnTransformer(
        [("company", OneHotEncoder(handle_unknown="ignore"), ["company"])],
        remainder="passthrough",
    )
    model = Pipeline(
        [("features", features), ("tree", DecisionTreeClassifier(max_depth=6, random_state=0))]
    )
    return model.fit(frame[["company", "distance", "hour"]], frame.tip), frame


def test_the_same_seed_gives_the_same_evasion_verdict(trips: tuple[Pipeline, pd.DataFrame]) -> None:
    model, frame = trips
    runs = [
        attacks.evasion(model, frame, frame.iloc[:500], DATA, EvasionParams(rows=8), seed=3)
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0] is not None and runs[0].attacked == 8


def test_an_attack_out_of_queries_stops() -> None:
    asked: list[int] = []

    def predict(points: np.ndarray) -> np.ndarray:
        asked.append(len(points))
        return np.zeros((len(points), 2), dtype=np.float32)

    budgeted = attacks._budgeted(predict, 10)
    budgeted(np.zeros((6, 2)))
    with pytest.raises(attacks._BudgetSpentError):
        budgeted(np.zeros((5, 2)))
    assert asked == [6]  # the call over the budget never reached the model
