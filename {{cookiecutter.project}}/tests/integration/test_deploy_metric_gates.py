"""A deploy refuses a bento whose packed metrics miss the environment's gates.metrics."""

from __future__ import annotations

import pytest
import yaml

from {{ cookiecutter.package }} import serving
from {{ cookiecutter.package }}.config import LOWER_IS_BETTER
from {{ cookiecutter.package }}.deploy import engine, records

pytestmark = pytest.mark.integration


def impossible_bound(metric: str) -> float:
    return -1.0 if metric in LOWER_IS_BETTER else 1.01


@pytest.fixture
def strict(paths, evaluated):
    """An extra environment whose gate on the primary metric no model can meet."""
    metric = evaluated.primary_metric
    file = paths.root / "environments" / "strict.yaml"
    document = {
        "name": "strict",
        "gates": {
            "metrics": {metric: impossible_bound(metric)},
            "latency_p99_ms": 10_000,
            "min_rps": 0.1,
            "load_test": {"users": 1, "seconds": 1},
        },
        "deploy": {"target": "local", "port": serving.free_port()},
    }
    file.write_text(yaml.safe_dump(document))
    try:
        yield "strict"
    finally:
        file.unlink()


def test_a_deploy_below_a_metric_gate_is_refused_naming_metric_value_and_bound(
    params, paths, bento, evaluated, strict
):
    history = records.read(paths)

    with pytest.raises(engine.Refused) as refused:
        engine.deploy(params, paths, strict, bento["tag"])

    metric = evaluated.primary_metric
    measured, bound = evaluated.metrics[metric], impossible_bound(metric)
    kind = "> maximum" if metric in LOWER_IS_BETTER else "< minimum"
    assert str(refused.value).startswith(
        f"bento {bento['tag']} does not meet the metric gates of environments/strict.yaml: "
        f"threshold {metric}: {measured:.4g} {kind} {bound:.4g}"
    )
    assert records.read(paths) == history
