"""Predictions depend on each row's values only: not on row order, batch or float noise."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.model


def test_predictions_do_not_depend_on_row_order(model, raw_data):
    shuffled = raw_data.sample(frac=1.0, random_state=7)
    np.testing.assert_array_equal(model.raw(shuffled), model.raw(raw_data)[shuffled.index])


def test_a_row_predicted_alone_gets_the_same_prediction_as_in_a_batch(model, raw_data):
    batch = model.raw(raw_data.head(20))
    alone = np.concatenate([model.raw(raw_data.iloc[[i]]) for i in range(20)])
    np.testing.assert_array_equal(alone, batch)


def test_a_tiny_relative_change_of_numeric_features_barely_changes_predictions(model, raw_data):
    numeric = [f.name for f in model.spec.features if f.kind == "numeric"]
    nudged = raw_data.copy()
    # Downwards: LightGBM sets each split threshold a hair above a training value and
    # sends `value <= threshold` left, so an upward nudge of a value sitting exactly on
    # a threshold steps over it (a tree is a step function). Nothing else may move.
    nudged[numeric] = nudged[numeric] - 1e-9 * nudged[numeric].abs()
    change = np.abs(model.raw(nudged) - model.raw(raw_data))
    # Probabilities live in [0, 1]; regression outputs are scaled by the target's spread.
    scale = 1.0 if model.spec.task != "regression" else float(raw_data[model.spec.target].std())
    assert change.max() <= 1e-6 * scale
