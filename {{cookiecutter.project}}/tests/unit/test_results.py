"""Typed results (issue 14): each reads back what it wrote, refuses a malformed file naming
the field, and the small facts they share have one home."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }}.challenge import read_labelled
from {{ cookiecutter.package }}.evaluate import compute_metrics
from {{ cookiecutter.package }}.evaluation_report import Baseline, EvaluationReport, Gate
from {{ cookiecutter.package }}.model import PREDICTIONS, outputs_from_raw
from {{ cookiecutter.package }}.model_card import Feature, FeatureSpec
from {{ cookiecutter.package }}.smoke import SmokeResult

pytestmark = pytest.mark.unit

SPEC = FeatureSpec(
    task="binary",
    target="churned",
    classes=["no", "yes"],
    features=[Feature(name="age", kind="numeric")],
)


def report(**changes: object) -> EvaluationReport:
    found = EvaluationReport(
        passed=True,
        failures=[],
        metrics={"roc_auc": 0.9},
        baseline=Baseline(strategy="prior", metrics={"roc_auc": 0.5}),
        production=None,
        gates=[
            Gate(
                name="baseline", metric="roc_auc", measured=0.9, bound=0.5, passed=True,
                message=None,
            )
        ],
        primary_metric="roc_auc",
        model_version="4",
        run_id="abc",
        rows=100,
        plots=["reports/roc_curve.png"],
    )  # fmt: skip
    return found.model_copy(update=changes)


def test_an_evaluation_report_reads_back_as_written(tmp_path):
    written = report()
    written.write(tmp_path / "evaluation.json")
    assert EvaluationReport.read(tmp_path / "evaluation.json") == written


def test_a_malformed_evaluation_report_is_one_line_naming_the_field(tmp_path):
    file = tmp_path / "evaluation.json"
    file.write_text(report().model_dump_json().replace('"rows":100', '"rows":"many"'))
    with pytest.raises(ValueError, match=r"is not an evaluation report \(rows: ") as raised:
        EvaluationReport.read(file)
    assert "\n" not in str(raised.value)


def test_a_missing_evaluation_report_asks_for_make_evaluate(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make evaluate` first"):
        EvaluationReport.read(tmp_path / "evaluation.json")


def test_a_smoke_result_with_unequal_shapes_survives_json():
    # Answers of another shape differ by infinity: it must read back, not turn into null.
    found = SmokeResult(passed=False, rows=3, max_abs_diff=math.inf, serving=None, url="u")
    assert SmokeResult.model_validate_json(found.model_dump_json()) == found


def test_a_smoke_result_stored_before_it_named_its_url_still_reads():
    stored = '{"passed": true, "rows": 5, "max_abs_diff": 0.0, "serving": "churn-model:v1"}'
    assert SmokeResult.model_validate_json(stored).url is None


def test_evaluation_scores_the_labels_the_service_answers_on_a_tie():
    # P = 0.5 is a tie: the service answers the first class; evaluation scored it positive.
    raw = np.array([0.5, 0.9, 0.1])
    y_true = np.array([0, 1, 0])
    served = outputs_from_raw(raw, SPEC)[PREDICTIONS]
    assert served == ["no", "yes", "no"]
    assert compute_metrics(SPEC, y_true, raw)["accuracy"] == 1.0


@pytest.mark.parametrize("name", ["window.CSV", "window.Parquet", "window.csv"])
def test_the_challenge_reads_a_labelled_window_in_either_format_and_any_case(tmp_path, name):
    frame = pd.DataFrame({"age": [30.0, 40.0, 50.0], "churned": ["no", None, "yes"]})
    path = tmp_path / name
    if name.lower().endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    labelled = read_labelled(path, SPEC)
    assert labelled["churned"].tolist() == ["no", "yes"]


def test_the_challenge_names_a_labelled_file_of_unknown_format(tmp_path):
    path = tmp_path / "window.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match=r"LABELLED: window.json has unknown format '.json'"):
        read_labelled(path, SPEC)
