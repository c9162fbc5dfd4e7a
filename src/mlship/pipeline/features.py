"""The preprocessor, built from the declared columns: text -> TF-IDF, categorical ->
one-hot, numeric -> impute + scale. Each text column is selected by name, so the
vectorizer sees that column's rows (a bare vectorizer on a DataFrame sees column names).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlship.config.params import DataParams, TextParams

MISSING_CATEGORY = "__missing__"


def feature_frame(frame: pd.DataFrame, data: DataParams) -> pd.DataFrame:
    """The declared feature columns in the types the preprocessor expects.

    Text: str, missing -> "". Categorical: str, missing kept as NaN. Numeric: float.
    """
    out = pd.DataFrame(index=frame.index)
    for column in data.text_columns:
        out[column] = frame[column].map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
    for column in data.categorical_columns:
        out[column] = frame[column].map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
    for column in data.numeric_columns:
        out[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    return out


def build_preprocessor(data: DataParams, text: TextParams, dense: bool) -> ColumnTransformer:
    transformers: list[tuple[str, object, str | list[str]]] = []
    for column in data.text_columns:
        vectorizer = TfidfVectorizer(
            max_features=text.max_features,
            ngram_range=text.ngram_range,
            min_df=text.min_df,
            sublinear_tf=text.sublinear_tf,
            lowercase=text.lowercase,
            dtype=np.float32,
        )
        transformers.append((f"text_{column}", vectorizer, column))
    if data.categorical_columns:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)),
            ]
        )
        transformers.append(("categorical", categorical, list(data.categorical_columns)))
    if data.numeric_columns:
        numeric = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
        transformers.append(("numeric", numeric, list(data.numeric_columns)))
    return ColumnTransformer(transformers, sparse_threshold=0.0 if dense else 0.3)
