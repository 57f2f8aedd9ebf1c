"""The drift settings in params.yaml against seeded replays of the model's own training data.

The reference is what `make monitor` uses: the training rows and predictions logged with the
session's model version. Windows are drawn (seeded) from those rows, and the predictions on
them come from the real booster. Unshifted, few windows may be flagged and no sequence may
reach a retrain decision; with every numeric feature shifted by half a reference standard
deviation, nearly every window must be flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }} import drift, monitor, registry
from {{ cookiecutter.package }}.config import PROJECT

pytestmark = pytest.mark.model

SEQUENCES = 100
FALSE_ALARM_TARGET = 0.05
POWER_TARGET = 0.95


@pytest.fixture(scope="module")
def reference(paths, trained):
    """The reference and spec as monitor loads them from the release store."""
    version = registry.client(paths).get_model_version(PROJECT, trained["model_version"])
    return monitor.load_reference(paths, version)


def replay(reference: pd.DataFrame, spec, model, rng, rows: int, shift: float) -> pd.DataFrame:
    """`rows` training rows drawn with replacement, numeric features moved by `shift`
    reference standard deviations, with the model's predictions on them (unshifted rows
    keep the predictions the booster made at training, logged in the reference)."""
    window = reference.iloc[rng.integers(0, len(reference), rows)].reset_index(drop=True)
    if not shift:
        return window
    for feature in spec.features:
        if feature.kind == "numeric":
            window[feature.name] = window[feature.name] + shift * reference[feature.name].std()
    return window.assign(prediction=model.predict(window)["predictions"])


def test_unshifted_replays_rarely_flag_a_window_and_never_decide_to_retrain(
    params, reference, model
):
    frame, spec = reference
    columns = monitor.drift_columns(spec)
    settings = params.monitoring
    rng = np.random.default_rng(params.seed)
    flagged, retrained = [], 0
    for _ in range(SEQUENCES):
        sequence = []
        for _ in range(settings.decision.n):
            window = replay(frame, spec, model, rng, settings.window_rows, shift=0.0)
            sequence.append(drift.compare(frame, window, columns, settings.drift)["drifted"])
            retrained += drift.decide(sequence, settings.decision)["retrain"]
        flagged += sequence

    assert np.mean(flagged) <= FALSE_ALARM_TARGET, f"{np.mean(flagged):.1%} of windows flagged"
    assert retrained == 0


def test_a_half_std_shift_of_every_numeric_feature_flags_nearly_every_window(
    params, reference, model
):
    frame, spec = reference
    columns = monitor.drift_columns(spec)
    rng = np.random.default_rng(params.seed + 1)
    flagged = [
        drift.compare(
            frame, replay(frame, spec, model, rng, params.monitoring.window_rows, shift=0.5),
            columns, params.monitoring.drift,
        )["drifted"]
        for _ in range(SEQUENCES)
    ]  # fmt: skip

    assert np.mean(flagged) >= POWER_TARGET, f"only {np.mean(flagged):.1%} of windows flagged"
