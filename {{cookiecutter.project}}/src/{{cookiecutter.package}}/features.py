"""Feature code shared by training, evaluation, serving and batch prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .config import Params
from .model_card import Feature, FeatureSpec

if TYPE_CHECKING:
    import pandas as pd


def derive_spec(frame: pd.DataFrame, params: Params) -> FeatureSpec:
    """Every column but the target and id columns is a feature."""
    import pandas as pd  # here and in to_features: the served worker has no pandas (to_matrix)

    excluded = {params.data.target, *params.data.id_columns}
    features = []
    for column in frame.columns:
        if column in excluded:
            continue
        if column in params.data.categorical:
            categories = sorted(frame[column].dropna().astype(str).unique().tolist())
            features.append(Feature(name=column, kind="categorical", categories=categories))
        elif pd.api.types.is_numeric_dtype(frame[column]):
            features.append(Feature(name=column, kind="numeric"))
        else:
            raise ValueError(
                f"column {column!r} is neither numeric nor listed in data.categorical in params.yaml"
            )
        features[-1].nullable = bool(frame[column].isna().any())
    classes = None
    if params.task != "regression":
        classes = sorted(frame[params.data.target].dropna().unique().tolist())
        classes = [c.item() if isinstance(c, np.generic) else c for c in classes]
    return FeatureSpec(
        task=params.task,
        target=params.data.target,
        features=features,
        classes=classes,
        id_columns=params.data.id_columns,
    )


def to_features(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Model input: the feature columns in training order, categories fixed to training's."""
    import pandas as pd

    columns: dict[str, pd.Categorical | pd.Series[float]] = {}
    for feature in spec.features:
        values = frame[feature.name]
        if feature.kind == "categorical":
            strings = values.astype("string").astype(object).where(values.notna(), None)
            columns[feature.name] = pd.Categorical(strings, categories=feature.categories)
        else:
            columns[feature.name] = pd.to_numeric(values).astype("float64")
    return pd.DataFrame(columns, index=frame.index)


def to_matrix(rows: list[list[Any]], spec: FeatureSpec) -> np.ndarray:
    """Model input without pandas, for rows of values already in training order.

    The same numbers LightGBM takes from `to_features`' frame: a category becomes its
    index in the training categories, a missing value NaN. Serving uses it because
    building a frame costs milliseconds for a one-row request; predicting costs microseconds.
    """
    codes = {
        index: {category: float(code) for code, category in enumerate(feature.categories or [])}
        for index, feature in enumerate(spec.features)
        if feature.kind == "categorical"
    }
    if codes:
        rows = [
            [codes[i].get(value, np.nan) if i in codes else value for i, value in enumerate(row)]
            for row in rows
        ]
    # dtype=float turns None (a missing value) into NaN.
    return np.array(rows, dtype="float64").reshape(len(rows), len(spec.features))


def encode_target(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Class ids (0..k-1) for classification, floats for regression."""
    target = frame[spec.target]
    if spec.classes is None:
        return target.to_numpy(dtype="float64")
    lookup = {label: index for index, label in enumerate(spec.classes)}
    return target.map(lookup).to_numpy(dtype="int64")


def split(frame: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified for classification: the same on every run."""
    # Imported here: scikit-learn pulls in SciPy, which the serving path never needs.
    from sklearn.model_selection import train_test_split

    stratify = frame[params.data.target] if params.task != "regression" else None
    train, test = train_test_split(
        frame, test_size=params.data.test_size, random_state=params.seed, stratify=stratify
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)
