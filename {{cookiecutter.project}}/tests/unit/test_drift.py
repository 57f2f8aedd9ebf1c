"""The drift tests, the k-of-N retrain rule and the prediction log's files, in isolation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from {{ cookiecutter.package }}.config import DecisionParams, DriftParams
from {{ cookiecutter.package }}.drift import compare, decide

pytestmark = pytest.mark.unit

RULE = DecisionParams(k=3, n=5)


def test_a_single_drifted_window_does_not_trigger_retraining():
    assert not decide([False, False, False, False, True], RULE)["retrain"]


def test_k_drifted_windows_of_the_last_n_with_the_latest_trigger_retraining():
    decision = decide([True, False, True, False, True], RULE)

    assert decision["retrain"]
    assert decision["drifted_windows"] == 3
    assert "3 of the last 5 windows drifted" in decision["reasons"][0]


def test_k_drifted_windows_do_not_trigger_it_when_the_latest_did_not_drift():
    assert not decide([True, True, True, True, False], RULE)["retrain"]


def test_windows_older_than_the_last_n_do_not_count():
    assert not decide([True, True, False, False, False, True, True], RULE)["retrain"]
    assert decide([True, True, False, False, True, True, True], RULE)["retrain"]


def test_labelled_performance_below_its_gate_triggers_retraining_without_drift():
    decision = decide([False], RULE, performance_failed=True)

    assert decision["retrain"]
    assert decision["reasons"] == ["labelled performance fell below its gate"]


def test_a_rule_asking_more_windows_than_it_looks_at_is_refused():
    with pytest.raises(ValidationError, match=r"k \(6\) must not exceed n \(5\)"):
        DecisionParams(k=6, n=5)


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(7)
    reference = pd.DataFrame(
        {"x": rng.normal(0, 1, 2000), "colour": rng.choice(["red", "blue"], 2000, p=[0.5, 0.5])}
    )
    same = pd.DataFrame(
        {"x": rng.normal(0, 1, 500), "colour": rng.choice(["red", "blue"], 500, p=[0.5, 0.5])}
    )
    shifted = pd.DataFrame(
        {"x": rng.normal(0.5, 1, 500), "colour": rng.choice(["red", "blue"], 500, p=[0.7, 0.3])}
    )
    return reference, same, shifted


@pytest.mark.parametrize("test", ["ks", "psi", "wasserstein"])
def test_each_numeric_test_flags_a_half_std_shift_and_passes_the_same_distribution(samples, test):
    reference, same, shifted = samples
    params = DriftParams(numeric=test)
    columns = {"x": "numeric"}

    assert not compare(reference, same, columns, params)["drifted"]
    flagged = compare(reference, shifted, columns, params)
    assert flagged["drifted_columns"] == ["x"]
    assert flagged["columns"][0]["test"] == test


def test_chi_square_flags_changed_category_shares_and_names_the_column(samples):
    reference, same, shifted = samples
    columns = {"colour": "categorical"}

    assert not compare(reference, same, columns, DriftParams())["drifted"]
    flagged = compare(reference, shifted, columns, DriftParams())
    assert flagged["drifted_columns"] == ["colour"]
    assert flagged["columns"][0]["test"] == "chi2"
    assert flagged["columns"][0]["p_value"] < flagged["alpha_per_column"]


def test_the_p_value_is_split_over_the_columns(samples):
    reference, same, _ = samples
    result = compare(reference, same, {"x": "numeric", "colour": "categorical"}, DriftParams())

    assert result["alpha_per_column"] == pytest.approx(0.05 / 2)


def test_the_prediction_log_rotates_and_keeps_at_most_backups_plus_one_files(paths, tmp_path):
    """The real logger behind bentoml.monitor, with a tiny size limit (`paths` first: it
    points BENTOML_HOME at the session's store before bentoml is imported)."""
    from {{ cookiecutter.package }}.model_card import Feature, FeatureSpec
    from {{ cookiecutter.package }}.prediction_log import Recorder

    spec = FeatureSpec(
        task="binary", target="y", classes=[0, 1],
        features=[Feature(name="a", kind="numeric"), Feature(name="row", kind="numeric")],
    )  # fmt: skip
    settings = {"enabled": True, "sample_rate": 1.0, "max_bytes": 2000, "backups": 2}
    recorder = Recorder(spec, settings, tmp_path, model_version="7", worker=9, name="rotation")
    for request in range(200):
        outputs = {"predictions": [1], "probabilities": [[0.25, 0.75]]}
        recorder.record([[float(request), 2.0]], outputs, f"req-{request}")
    recorder.monitor.data.flush()  # the server's flushing thread does it twice a second

    files = sorted((tmp_path / "rotation" / "data").iterdir())
    assert [f.name for f in files] == ["data.9.log", "data.9.log.1", "data.9.log.2"]
    assert all(f.stat().st_size <= 2000 for f in files)
    last = json.loads(files[0].read_text().splitlines()[-1])
    assert last["request_id"] == "req-199"
    assert last["a"] == 199.0
    assert last["row_"] == 2.0  # a feature named like a meta column keeps its value
    assert last["row"] == 0
    assert last["model_version"] == "7"
    assert last["probabilities"] == [0.25, 0.75]


def test_every_logged_row_reads_back_as_the_values_served(paths, tmp_path):
    """Rows of numbers take a one-call format, others a value-by-value path: both must be
    JSON that gives back exactly what was predicted on (floats to the last bit)."""
    from {{ cookiecutter.package }}.model_card import Feature, FeatureSpec
    from {{ cookiecutter.package }}.prediction_log import Recorder

    numbers = [0.1 + 0.2, 1e-300, 1.7976931348623157e308, -0.0, 12345678901234567, 5e-324]
    for kinds in (["numeric"] * 6, ["numeric"] * 5 + ["categorical"]):
        spec = FeatureSpec(
            task="binary", target="y", classes=["no", "yes"],
            features=[Feature(name=f"f{i}", kind=kind) for i, kind in enumerate(kinds)],
        )  # fmt: skip
        name = f"values-{kinds[-1]}"  # bentoml.monitor keeps one monitor per name
        recorder = Recorder(spec, {}, tmp_path, model_version="3", name=name)
        rows = [numbers, [None, *numbers[1:]]]
        if kinds[-1] == "categorical":
            rows = [[*numbers[:5], 'a "quoted" \\ category'], [None] * 6]
        outputs = {"predictions": ["yes", "no"], "probabilities": [[0.2, 0.8], [0.9, 0.1]]}
        recorder.record(rows, outputs, "req-1")
        recorder.monitor.data.flush()

        lines = (tmp_path / name / "data" / "data.0.log").read_text().splitlines()
        logged = [json.loads(line) for line in lines]
        assert [[entry[f"f{i}"] for i in range(6)] for entry in logged] == rows
        assert [entry["row"] for entry in logged] == [0, 1]
        assert [entry["prediction"] for entry in logged] == ["yes", "no"]


def test_only_a_well_formed_incoming_request_id_is_reused():
    from {{ cookiecutter.package }}.prediction_log import request_id

    assert request_id([(b"x-request-id", b"order-42.a:b_c")]) == "order-42.a:b_c"
    for bad in (b"", b"has space", b"x" * 200, b"<script>"):
        made = request_id([(b"x-request-id", bad)])
        assert made != bad.decode() and len(made) == 32


def test_the_batched_ks_test_gives_scipy_ks_2samp_figures():
    from scipy import stats

    from {{ cookiecutter.package }}.drift import ks_tests

    rng = np.random.default_rng(3)
    pairs = [(rng.normal(0, 1, 426), rng.normal(shift, 1, 500)) for shift in (0.0, 0.1, 0.5)]
    pairs += [
        (rng.normal(0, 1, 426), rng.normal(0.2, 1, 20_000)),  # a window far larger
        (rng.normal(0, 1, 3000), rng.normal(0, 1, 50)),  # a window smaller
        (rng.integers(0, 5, 400).astype(float), rng.integers(1, 6, 900).astype(float)),  # ties
        (np.arange(10.0), np.arange(10.0)),  # the same sample
        (np.arange(10.0), np.arange(20.0, 25.0)),  # apart
    ]

    for (statistic, p_value), (ref, win) in zip(ks_tests(pairs), pairs, strict=True):
        expected = stats.ks_2samp(ref, win, method="asymp")
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
