"""A diamond's volume beside its measures, categories as ordinal codes, then gradient
boosting on the price."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlship.card import Features


class Volume(TransformerMixin, BaseEstimator):
    """Adds volume = x * y * z (cubic millimetres)."""

    def fit(self, frame: pd.DataFrame, target: Any = None) -> Volume:
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(volume=frame["x"] * frame["y"] * frame["z"])

    def get_feature_names_out(self, names: Any = None) -> np.ndarray:
        return np.asarray([*self.feature_names_in_, "volume"], dtype=object)


def build(params: dict[str, Any], features: Features) -> Pipeline:
    encode = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                list(features.categorical),
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline(
        [
            ("volume", Volume()),
            ("encode", encode),
            ("model", HistGradientBoostingRegressor(**params)),
        ]
    )
