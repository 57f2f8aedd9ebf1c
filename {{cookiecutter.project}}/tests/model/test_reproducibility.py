"""Same data, params and seed: the same model, down to the last bit of every prediction."""

from __future__ import annotations

import numpy as np
import pytest

from {{ cookiecutter.package }} import features, train

pytestmark = pytest.mark.model


def test_training_twice_in_separate_stores_gives_identical_predictions(
    isolated, trained, model, raw_data
):
    assert isolated.card["data_sha256"] == trained["data_sha256"]
    assert isolated.card["spec"] == trained["spec"]
    x = features.to_features(raw_data, model.spec)
    np.testing.assert_array_equal(isolated.booster.predict(x), model.booster.predict(x))


def test_fitting_twice_in_one_process_gives_identical_predictions(params, raw_data, model):
    train_df, test_df = features.split(raw_data, params)
    x = features.to_features(test_df, model.spec)
    first = train.fit(params, train_df, model.spec).booster_.predict(x)
    second = train.fit(params, train_df, model.spec).booster_.predict(x)
    np.testing.assert_array_equal(first, second)
    # The saved model.txt predicts exactly like the fitted booster it came from.
    np.testing.assert_array_equal(first, model.booster.predict(x))
