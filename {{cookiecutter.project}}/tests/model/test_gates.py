"""The evaluation gates: thresholds, the dummy baseline and no regression against production."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package }} import evaluate, registry, train
from {{ cookiecutter.package }}.config import LOWER_IS_BETTER, PROJECT

pytestmark = pytest.mark.model

TASK_METRICS = {
    "binary": {"roc_auc", "f1", "accuracy", "precision", "recall", "log_loss"},
    "multiclass": {"f1_macro", "accuracy", "log_loss"},
    "regression": {"rmse", "mae", "r2"},
}


def test_the_default_model_passes_every_gate(evaluated, params):
    assert evaluated.passed, evaluated.failures
    assert evaluated.failures == []
    assert all(gate.passed for gate in evaluated.gates)
    gated = {gate.metric for gate in evaluated.gates if gate.name == "threshold"}
    assert gated == set(params.evaluation.thresholds)


def test_the_report_has_every_metric_of_the_task(evaluated, params):
    assert set(evaluated.metrics) == TASK_METRICS[params.task]


def test_the_model_beats_the_dummy_baseline_on_the_primary_metric(evaluated):
    metric = evaluated.primary_metric
    model, dummy = evaluated.metrics[metric], evaluated.baseline.metrics[metric]
    assert (model < dummy) if metric in LOWER_IS_BETTER else (model > dummy)
    (gate,) = [gate for gate in evaluated.gates if gate.name == "baseline"]
    assert gate.passed and gate.bound == dummy


def test_the_text_report_shows_each_gated_metric_and_the_verdict(evaluated, params):
    text = evaluate.format_report(evaluated)
    lines = text.splitlines()
    for metric, bound in params.evaluation.thresholds.items():
        kind = "max" if metric in LOWER_IS_BETTER else "min"
        assert any(line.startswith(metric) and f"{kind} {bound:.4g}" in line for line in lines)
    assert "dummy" in text
    assert text.rstrip().endswith("PASSED")


def test_evaluation_refuses_a_model_trained_with_another_seed_or_split(trained, params, paths):
    reseeded = params.model_copy(update={"seed": params.seed + 1})
    with pytest.raises(ValueError, match="seed or data section changed"):
        evaluate.check_same_split(trained, reseeded, paths)
    other_data = {**trained, "data_sha256": "0" * 64}
    with pytest.raises(ValueError, match="was trained on data 000000000000"):
        evaluate.check_same_split(other_data, params, paths)


def test_an_impossible_threshold_fails_naming_the_gate_and_the_shortfall(isolated, params):
    metric = evaluate.PRIMARY[params.task]
    lower = metric in LOWER_IS_BETTER
    bound = 0.0 if lower else 1.5
    evaluation = params.evaluation.model_copy(update={"thresholds": {metric: bound}})
    strict = params.model_copy(update={"evaluation": evaluation})
    with isolated.active():
        report = evaluate.evaluate(strict, isolated.paths)

    assert report.passed is False
    (gate,) = [gate for gate in report.gates if gate.name == "threshold"]
    assert gate.metric == metric and gate.bound == bound and not gate.passed
    gap = abs(gate.measured - bound)
    expected = f"over by {gap:.4g}" if lower else f"short by {gap:.4g}"
    (failure,) = report.failures
    assert failure.startswith(f"threshold {metric}: ")
    assert expected in failure


def test_a_candidate_worse_than_production_fails_the_no_regression_gate(isolated, params):
    # A single two-leaf tree: far weaker than the default model on every task.
    stump = params.model_copy(
        update={"model": {**params.model, "n_estimators": 1, "num_leaves": 2}}
    )
    production = isolated.card["model_version"]
    with isolated.active():
        client = registry.client(isolated.paths)
        client.set_registered_model_alias(PROJECT, registry.PRODUCTION, production)
        try:
            worse = train.train(stump, isolated.paths)
            report = evaluate.evaluate(stump, isolated.paths)
        finally:
            client.delete_registered_model_alias(PROJECT, registry.PRODUCTION)

    assert worse["model_version"] != production
    assert report.passed is False
    assert report.production.version == production
    (gate,) = [gate for gate in report.gates if gate.name == "production"]
    assert not gate.passed
    failure = next(f for f in report.failures if f.startswith("production "))
    assert f"production version {production}" in failure
    assert "tolerance" in failure


def test_an_equal_candidate_passes_the_no_regression_gate(isolated, params):
    with isolated.active():
        client = registry.client(isolated.paths)
        client.set_registered_model_alias(
            PROJECT, registry.PRODUCTION, isolated.card["model_version"]
        )
        try:
            train.train(params, isolated.paths)
            report = evaluate.evaluate(params, isolated.paths)
        finally:
            client.delete_registered_model_alias(PROJECT, registry.PRODUCTION)

    assert report.passed, report.failures
    (gate,) = [gate for gate in report.gates if gate.name == "production"]
    assert gate.passed and gate.measured == report.production.metrics[gate.metric]


def test_a_retraining_leaves_the_no_regression_gate_to_the_challenge(isolated, params):
    # `make retrain`: a worse candidate is not a failed pipeline; the challenge rejects it.
    # No thresholds: the stump would fail them, and they still apply in a retraining.
    stump = params.model_copy(
        update={
            "model": {**params.model, "n_estimators": 1, "num_leaves": 2},
            "evaluation": params.evaluation.model_copy(update={"thresholds": {}}),
        }
    )
    with isolated.active():
        client = registry.client(isolated.paths)
        client.set_registered_model_alias(
            PROJECT, registry.PRODUCTION, isolated.card["model_version"]
        )
        try:
            train.train(stump, isolated.paths)
            report = evaluate.evaluate(stump, isolated.paths, defer_to_challenge=True)
        finally:
            client.delete_registered_model_alias(PROJECT, registry.PRODUCTION)

    (gate,) = [gate for gate in report.gates if gate.name == "production"]
    assert not gate.passed and gate.advisory
    assert report.passed, report.failures
    assert "(advisory: make challenge decides)" in evaluate.format_report(report)
