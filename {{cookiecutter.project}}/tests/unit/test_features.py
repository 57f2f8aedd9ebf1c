"""Feature code shared by training and serving: the spec, the model input and the split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }}.config import DataParams, Params
from {{ cookiecutter.package }}.features import (
    derive_spec,
    encode_target,
    split,
    to_features,
    to_matrix,
)

pytestmark = pytest.mark.unit


def make_params(task: str = "binary", **data) -> Params:
    return Params(task=task, data=DataParams(source="data.csv", **data))


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4"],
            "tenure": [1, 5, 12, 30],
            "spend": [10.0, None, 30.0, 40.0],
            "plan": pd.Categorical(["premium", "basic", "basic", "gold"]),
            "target": ["no", "yes", "no", "yes"],
        }
    )


def test_the_spec_types_every_column_but_target_and_ids(frame):
    params = make_params(categorical=["plan"], id_columns=["customer_id"])

    spec = derive_spec(frame, params)

    assert spec.names == ["tenure", "spend", "plan"]
    assert [f.kind for f in spec.features] == ["numeric", "numeric", "categorical"]
    assert spec.features[2].categories == ["basic", "gold", "premium"]
    assert [f.nullable for f in spec.features] == [False, True, False]
    assert spec.classes == ["no", "yes"]
    assert spec.id_columns == ["customer_id"]


def test_a_regression_spec_has_no_classes(frame):
    frame = frame.assign(target=[1.5, 2.0, 3.5, 4.0])
    params = make_params("regression", categorical=["plan"], id_columns=["customer_id"])

    spec = derive_spec(frame, params)

    assert spec.classes is None


def test_a_text_column_not_declared_categorical_is_named(frame):
    with pytest.raises(ValueError, match="customer_id"):
        derive_spec(frame, make_params(categorical=["plan"]))


def test_model_input_keeps_training_category_order_and_unseen_becomes_missing(frame):
    spec = derive_spec(frame, make_params(categorical=["plan"], id_columns=["customer_id"]))
    new = pd.DataFrame(
        {"plan": ["gold", "platinum", None], "spend": [1, 2, 3], "tenure": [3, 2, 1]}
    )

    features = to_features(new, spec)

    assert list(features.columns) == ["tenure", "spend", "plan"]
    assert list(features["plan"].cat.categories) == ["basic", "gold", "premium"]
    assert features["plan"].tolist()[0] == "gold"
    assert features["plan"].isna().tolist() == [False, True, True]
    assert features["tenure"].dtype == np.float64


def test_targets_encode_to_class_ids_in_spec_order(frame):
    spec = derive_spec(frame, make_params(categorical=["plan"], id_columns=["customer_id"]))

    assert encode_target(frame, spec).tolist() == [0, 1, 0, 1]


def test_the_split_is_the_same_on_every_run_and_keeps_class_shares():
    frame = pd.DataFrame({"x": range(100), "target": [0] * 80 + [1] * 20})
    params = make_params(test_size=0.25)

    train, test = split(frame, params)
    again, _ = split(frame, params)

    pd.testing.assert_frame_equal(train, again)
    assert len(test) == 25
    assert test["target"].mean() == pytest.approx(0.2)
    assert train["target"].mean() == pytest.approx(0.2)
    assert set(train["x"]).isdisjoint(test["x"])


def test_a_different_seed_gives_a_different_split():
    frame = pd.DataFrame({"x": range(100), "target": [0, 1] * 50})

    first, _ = split(frame, make_params())
    other, _ = split(frame, make_params().model_copy(update={"seed": 7}))

    assert set(first["x"]) != set(other["x"])


def test_the_serving_matrix_holds_the_numbers_lightgbm_takes_from_the_frame(frame):
    spec = derive_spec(frame, make_params(categorical=["plan"], id_columns=["customer_id"]))
    rows = [[1, None, "premium"], [5.5, 20.0, None], [7, 1.0, "unseen"]]

    matrix = to_matrix(rows, spec)

    x = to_features(pd.DataFrame(rows, columns=spec.names), spec)
    # LightGBM feeds a pandas category as its code, with -1 (missing or unseen) as NaN.
    codes = x["plan"].cat.codes.astype("float64").replace(-1.0, np.nan)
    expected = np.column_stack([x["tenure"], x["spend"], codes])
    np.testing.assert_array_equal(matrix, expected)
