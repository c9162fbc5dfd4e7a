"""Telecom churn with LightGBM and usage features of our own (examples/custom/params.yaml).

UsageFeatures adds what the raw columns only imply: total minutes and charges over the day,
evening, night and international plans, the price paid per minute, and calls per
customer-service contact. LightGBM then sees those beside the declared columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlship.card import Features

PERIODS = ("day", "eve", "night", "intl")


class UsageFeatures(TransformerMixin, BaseEstimator):
    """Adds total_minutes, total_charge, charge_per_minute, calls_per_service_call."""

    def fit(self, frame: pd.DataFrame, target: Any = None) -> UsageFeatures:
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        minutes = sum(frame[f"total_{p}_minutes"].astype(float) for p in PERIODS)
        charge = sum(frame[f"total_{p}_charge"].astype(float) for p in PERIODS)
        calls = sum(frame[f"total_{p}_calls"].astype(float) for p in PERIODS)
        out["total_minutes"] = minutes
        out["total_charge"] = charge
        out["charge_per_minute"] = charge / minutes.where(minutes > 0)
        out["calls_per_service_call"] = calls / (frame["number_customer_service_calls"] + 1)
        return out

    def get_feature_names_out(self, names: Any = None) -> np.ndarray:
        extra = ["total_minutes", "total_charge", "charge_per_minute", "calls_per_service_call"]
        return np.asarray([*self.feature_names_in_, *extra], dtype=object)


def build(params: dict[str, Any], features: Features) -> Pipeline:
    """Usage features, categories as ordinal codes (LightGBM splits on them), then LightGBM."""
    encode = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
                ),
                list(features.categorical),
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline(
        [
            ("usage", UsageFeatures()),
            ("encode", encode),
            ("model", LGBMClassifier(verbose=-1, **params)),
        ]
    )
