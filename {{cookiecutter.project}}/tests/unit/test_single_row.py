"""The fast one-row path answers exactly as `Booster.predict` does, for every task."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from {{ cookiecutter.package }} import single_row
from {{ cookiecutter.package }}.model import Model
from {{ cookiecutter.package }}.model_card import Feature, FeatureSpec

pytestmark = pytest.mark.unit

TASKS = {
    "binary": ({"objective": "binary"}, lambda x: (x[:, 0] > 0).astype(int)),
    "multiclass": (
        {"objective": "multiclass", "num_class": 3},
        lambda x: np.digitize(x[:, 0], [-0.5, 0.5]),
    ),
    "regression": ({"objective": "regression"}, lambda x: 3 * x[:, 0] - x[:, 1]),
}


def booster(task: str) -> lgb.Booster:
    params, label = TASKS[task]
    x = np.random.default_rng(7).normal(size=(400, 4))
    data = lgb.Dataset(x, label=label(x))
    return lgb.train({**params, "verbose": -1, "num_leaves": 7}, data, num_boost_round=20)


def rows() -> np.ndarray:
    x = np.random.default_rng(11).normal(size=(50, 4))
    x[3, 1] = np.nan  # a missing value takes the trees' default direction on both paths
    return x


def test_the_locked_lightgbm_offers_the_fast_path():
    # Serving falls back to Booster.predict without it: this keeps the fallback visible.
    assert single_row.available()


@pytest.mark.parametrize("task", TASKS)
def test_each_row_is_predicted_exactly_as_the_booster_predicts_it(task):
    model = booster(task)
    fast = single_row.SingleRowPredictor(model)

    for row in rows():
        expected = model.predict(row[None, :], num_threads=1)
        got = fast.predict(row[None, :])
        assert got.shape == expected.shape
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("task", TASKS)
def test_the_served_model_takes_the_fast_path_for_one_row_and_the_booster_for_more(task):
    classes = {"binary": [0, 1], "multiclass": [0, 1, 2], "regression": None}[task]
    spec = FeatureSpec(
        task=task,
        target="target",
        features=[Feature(name=f"x{i}", kind="numeric") for i in range(4)],
        classes=classes,
    )
    model = Model(booster(task), spec)
    values = rows().tolist()

    one_by_one = [model.predict_rows([row]) for row in values]
    together = model.predict_rows(values)

    assert model.one_row_predictor is not None
    for index, answer in enumerate(one_by_one):
        assert answer == {key: [column[index]] for key, column in together.items()}


def test_a_row_of_the_wrong_width_is_refused_not_read_past():
    fast = single_row.SingleRowPredictor(booster("binary"))
    with pytest.raises(ValueError, match="expected 4 features, got 3"):
        fast.predict(np.zeros((1, 3)))
