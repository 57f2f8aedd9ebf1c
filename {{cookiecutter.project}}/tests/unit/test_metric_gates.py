"""gates.metrics of an environment file: minimums, maximums for error metrics."""

from __future__ import annotations

import pytest
import yaml

from {{ cookiecutter.package }}.deploy import checks
from {{ cookiecutter.package }}.deploy.environments import load

pytestmark = pytest.mark.unit

METRICS = {"roc_auc": 0.95, "f1": 0.9, "log_loss": 0.2}


def environment_with(tmp_path, metrics: dict):
    document = {
        "name": "strict",
        "gates": {
            "metrics": metrics,
            "latency_p99_ms": 500,
            "min_rps": 10,
            "load_test": {"users": 1, "seconds": 1},
        },
        "deploy": {"target": "local", "port": 3009},
    }
    file = tmp_path / "strict.yaml"
    file.write_text(yaml.safe_dump(document))
    return load(file)


def test_metrics_meeting_every_gate_pass(tmp_path):
    environment = environment_with(tmp_path, {"roc_auc": 0.9, "log_loss": 0.3})

    assert checks.metric_gate_failures(environment, METRICS) == []


def test_no_metric_gates_pass_any_metrics(tmp_path):
    assert checks.metric_gate_failures(environment_with(tmp_path, {}), METRICS) == []


def test_a_metric_under_its_minimum_is_named_with_value_and_bound(tmp_path):
    environment = environment_with(tmp_path, {"roc_auc": 0.99, "f1": 0.5})

    [failure] = checks.metric_gate_failures(environment, METRICS)

    assert "roc_auc" in failure and "0.95" in failure and "minimum 0.99" in failure


def test_an_error_metric_is_a_maximum(tmp_path):
    environment = environment_with(tmp_path, {"log_loss": 0.1})

    [failure] = checks.metric_gate_failures(environment, METRICS)

    assert "log_loss" in failure and "0.2" in failure and "maximum 0.1" in failure


def test_a_gate_on_a_metric_the_model_lacks_fails_naming_it(tmp_path):
    [failure] = checks.metric_gate_failures(environment_with(tmp_path, {"rmse": 1.0}), METRICS)

    assert "rmse" in failure and "no such metric" in failure
