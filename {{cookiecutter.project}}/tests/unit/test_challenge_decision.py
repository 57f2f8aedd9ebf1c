"""Champion against challenger: the decision rule and why a retraining ran (the Makefile
that packages a winner only: test_makefile_gates.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package }} import challenge, retraining
from {{ cookiecutter.package }}.config import Paths

pytestmark = pytest.mark.unit


def held_out(challenger: float, champion: float | None, rows: int = 100) -> dict:
    return {"rows": rows, "challenger": challenger, "champion": champion}


def test_a_challenger_ahead_by_the_margin_wins():
    verdict = challenge.decide("roc_auc", {"held_out": held_out(0.95, 0.90)}, 0.01, 50, "3")

    assert verdict["winner"]
    assert verdict["compared"]["held_out"]["ahead"] == pytest.approx(0.05)
    assert verdict["compared"]["held_out"]["needed"] == pytest.approx(0.009)
    assert verdict["reason"].startswith("beats champion version 3 on roc_auc by the 1% margin")


def test_a_challenger_ahead_by_less_than_the_margin_loses_naming_the_gap():
    verdict = challenge.decide("roc_auc", {"held_out": held_out(0.905, 0.90)}, 0.01, 50, "3")

    assert not verdict["winner"]
    assert verdict["reason"] == (
        "does not beat champion version 3 on roc_auc by the 1% margin: held-out split "
        "(100 rows) 0.905 vs 0.9, ahead by +0.005 (needs +0.009)"
    )


def test_an_equal_challenger_loses_even_with_no_margin():
    verdict = challenge.decide("f1_macro", {"held_out": held_out(0.9, 0.9)}, 0.0, 50, "3")

    assert not verdict["winner"]


@pytest.mark.parametrize(("challenger", "winner"), [(50.0, True), (59.5, False), (70.0, False)])
def test_for_an_error_metric_lower_is_better(challenger, winner):
    verdict = challenge.decide("rmse", {"held_out": held_out(challenger, 60.0)}, 0.01, 50, "3")

    assert verdict["winner"] is winner
    assert verdict["compared"]["held_out"]["ahead"] == pytest.approx(60.0 - challenger)


def test_the_labelled_window_must_be_won_too_once_it_has_enough_rows():
    sets = {"held_out": held_out(0.95, 0.90), "labelled": held_out(0.80, 0.85, rows=50)}

    verdict = challenge.decide("roc_auc", sets, 0.01, 50, "3")

    assert not verdict["winner"]
    assert "labelled window (50 rows) 0.8 vs 0.85" in verdict["reason"]
    assert "held-out split" not in verdict["reason"]


def test_a_labelled_window_below_min_labels_is_left_out_and_said_so():
    sets = {"held_out": held_out(0.95, 0.90), "labelled": held_out(0.10, 0.99, rows=49)}

    verdict = challenge.decide("roc_auc", sets, 0.01, 50, "3")

    assert verdict["winner"]
    assert set(verdict["compared"]) == {"held_out"}
    assert verdict["reason"].endswith("labelled window not compared: 49 rows, fewer than 50")


def test_without_a_champion_the_challenger_wins_by_default():
    verdict = challenge.decide("roc_auc", {"held_out": held_out(0.6, None)}, 0.01, 50, None)

    assert verdict["winner"] and verdict["compared"] == {}
    assert "aliased production: the challenger wins by default" in verdict["reason"]


def monitor_result(folder: Path, window: str, retrain: bool) -> Path:
    path = folder / f"{window}.json"
    path.write_text(
        json.dumps(
            {"window": window, "model_version": "4", "monitor_run_id": f"run-{window}",
             "decision": {"retrain": retrain}}
        )
    )  # fmt: skip
    return path


def test_a_drift_retraining_names_the_latest_window_that_decided_it(tmp_path):
    paths = Paths(tmp_path)
    paths.monitoring_reports.mkdir(parents=True)
    monitor_result(paths.monitoring_reports, "20260101T000000.000Z", True)
    monitor_result(paths.monitoring_reports, "20260102T000000.000Z", True)

    tags = retraining.why(paths, "drift", None)

    assert tags == {
        "retrain.reason": "drift",
        "retrain.window": "20260102T000000.000Z",
        "retrain.monitor_run_id": "run-20260102T000000.000Z",
        "retrain.monitored_version": "4",
    }


def test_a_drift_retraining_refuses_a_window_that_did_not_decide_to_retrain(tmp_path):
    report = monitor_result(tmp_path, "20260101T000000.000Z", False)

    with pytest.raises(ValueError, match="did not decide to retrain: pass the result that did"):
        retraining.why(Paths(tmp_path), "drift", report)


def test_a_drift_retraining_without_a_monitor_result_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no `make monitor` result in .*MONITOR_REPORT"):
        retraining.why(Paths(tmp_path), "drift", None)


@pytest.mark.parametrize(("given", "expected"), [(None, "manual"), ("schedule", "schedule")])
def test_a_manual_or_scheduled_retraining_needs_no_monitor_result(tmp_path, given, expected):
    assert retraining.why(Paths(tmp_path), given, None) == {"retrain.reason": expected}


def test_an_unknown_reason_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match="REASON: 'because' is not one of drift, schedule, manual"):
        retraining.why(Paths(tmp_path), "because", None)
