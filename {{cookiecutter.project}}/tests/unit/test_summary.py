"""`make summary`: the reports a CI job has, as Markdown tables for the job summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package }} import summary
from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.evaluation_report import Baseline, EvaluationReport, Gate

pytestmark = pytest.mark.unit

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4" time="2.5">
<testcase classname="tests.data.test_x" name="test_ok" time="1"/>
<testcase classname="tests.data.test_x" name="test_also_ok" time="1"/>
<testcase classname="tests.data.test_x" name="test_skipped" time="0"><skipped message="no"/></testcase>
<testcase classname="tests.data.test_x" name="test_broken" time="0.5">
<failure message="assert 1 == 2">details</failure></testcase>
</testsuite></testsuites>
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_an_empty_job_says_it_has_no_reports(tmp_path: Path):
    assert summary.render(Paths(tmp_path)) == "No reports in this job.\n"


def test_junit_results_become_a_row_per_layer_and_a_row_per_failure(tmp_path: Path):
    write(tmp_path / "reports" / "junit" / "data.xml", JUNIT)
    text = summary.render(Paths(tmp_path))
    assert "| data | 2 | 1 | 0 | 1 | 2.5 |" in text
    assert "| data | tests.data.test_x::test_broken | assert 1 == 2 |" in text


def test_validation_failures_name_the_column_and_expectation(tmp_path: Path):
    outcome = {
        "success": False,
        "statistics": {"successful_expectations": 1, "evaluated_expectations": 2},
        "results": [
            {"success": True, "column": "age", "expectation": "not_null", "observed": "0"},
            {"success": False, "column": "income", "expectation": "between", "observed": "3 out"},
        ],
    }
    write(tmp_path / "reports" / "validation" / "result.json", json.dumps(outcome))
    text = summary.render(Paths(tmp_path))
    assert "### Data validation: **FAIL**" in text
    assert "1/2 expectations met." in text
    assert "| income | between | 3 out |" in text
    assert "| age |" not in text


def test_metrics_are_shown_against_baseline_and_gates(tmp_path: Path):
    gate = Gate(
        name="threshold", metric="roc_auc", measured=0.98, bound=0.95, passed=True, message=None
    )
    report = EvaluationReport(
        passed=True,
        failures=[],
        metrics={"roc_auc": 0.98},
        baseline=Baseline(strategy="prior", metrics={"roc_auc": 0.5}),
        production=None,
        gates=[gate],
        primary_metric="roc_auc",
        model_version="3",
        run_id="r",
        rows=10,
        plots=[],
    )
    report.write(tmp_path / "reports" / "evaluation.json")
    text = summary.render(Paths(tmp_path))
    assert "### Model evaluation (model version 3): pass" in text
    assert "| roc_auc | 0.98 | 0.5 |  |" in text
    assert "| threshold | roc_auc | 0.98 | 0.95 | pass |" in text


def test_load_tests_show_figures_against_their_gates(tmp_path: Path):
    result = {
        "environment": "test",
        "users": 2,
        "seconds": 5,
        "requests": 250,
        "rps": 50.0,
        "p50_ms": 20.0,
        "p95_ms": 60.0,
        "p99_ms": 90.0,
        "errors": 0,
        "passed": False,
        "gates": {"latency_p99_ms": 50, "min_rps": 10},
    }
    write(tmp_path / "reports" / "loadtest" / "test" / "result.json", json.dumps(result))
    text = summary.render(Paths(tmp_path))
    assert (
        "| test | 2 users, 5 s | 250 | 50.0 (min 10) | 20 | 60 | 90 (max 50) | 0 | **FAIL** |"
        in text
    )


def test_an_unreadable_report_is_named_not_fatal(tmp_path: Path):
    write(tmp_path / "reports" / "evaluation.json", "{not json")
    write(
        tmp_path / "reports" / "deploys" / "test.json",
        json.dumps(
            {
                "time": "t",
                "environment": "test",
                "action": "deploy",
                "bento": "b:1",
                "model_version": "1",
                "actor": "ci",
                "success": True,
            }
        ),
    )
    text = summary.render(Paths(tmp_path))
    assert "reports/evaluation.json could not be read" in text
    assert "| t | test | deploy | b:1 | 1 | ci | ok |" in text


def test_a_challenge_shows_both_models_per_set_and_the_verdict(tmp_path: Path):
    result = {
        "winner": False,
        "reason": "does not beat champion version 2 on roc_auc by the 1% margin: ...",
        "metric": "roc_auc",
        "challenger": {"version": "3"},
        "champion": {"version": "2"},
        "sets": {
            "held_out": {"rows": 143, "challenger": {"roc_auc": 0.99}, "champion": {"roc_auc": 0.985},
                         "beats": False},
            "labelled": {"rows": 12},
        },
    }  # fmt: skip
    write(tmp_path / "reports" / "challenge.json", json.dumps(result))
    text = summary.render(Paths(tmp_path))
    assert "### Challenge: version 3 against champion version 2" in text
    assert "| held_out | 143 | 0.99 | 0.985 | does not beat |" in text
    assert "| labelled | 12 |  |  | not compared |" in text
    assert "**lost**: does not beat champion version 2" in text
