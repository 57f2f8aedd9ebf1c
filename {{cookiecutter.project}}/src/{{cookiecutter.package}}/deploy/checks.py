"""What a deployed bento must pass: metric gates, health, a smoke prediction, the load-test gates.

The smoke reference is the registered MLflow model version the bento says it packs,
loaded in this process (smoke.reference_model): a bento that packs something else (a
tampered card, a stale booster, a wrong feature order) answers differently and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import pandas as pd

from .. import loadtest, smoke
from ..config import Params, Paths
from ..evaluation_report import EvaluationReport
from ..model import Model
from ..model_card import EVALUATION_FILE
from ..serving import readyz
from .environments import Environment


class CheckFailed(RuntimeError):
    """A check failed; `checks` holds what was measured up to and including it."""

    def __init__(self, message: str, checks: dict[str, Any]) -> None:
        super().__init__(message)
        self.checks = checks


def bento_metrics(tag: str) -> dict[str, float]:
    """The evaluation metrics packed with the bento's model (written by `make package`)."""
    import bentoml

    for packed in bentoml.get(tag).info.all_models:
        stored = bentoml.models.get(packed.tag)
        # Saved by `make package` as {metric: value}, in the model's JSON metadata.
        metrics = cast("dict[str, float] | None", (stored.info.metadata or {}).get("metrics"))
        if metrics is None and (Path(stored.path) / EVALUATION_FILE).exists():
            metrics = EvaluationReport.read(Path(stored.path) / EVALUATION_FILE).metrics
        if metrics:
            return metrics
    raise ValueError(f"bento {tag} packs no model with evaluation metrics: run `make package`")


def metric_gate_failures(environment: Environment, metrics: dict[str, float]) -> list[str]:
    """The environment's `gates.metrics` the metrics miss: minimums, or maximums for errors."""
    from ..evaluate import threshold_gates

    gates = threshold_gates(environment.gates.metrics, metrics)
    return [gate.message or "" for gate in gates if not gate.passed]


def health(url: str) -> dict[str, Any]:
    try:
        status = readyz(url, timeout=10)
    except httpx.HTTPError as error:
        status, detail = None, str(error)
    else:
        detail = f"/readyz answered {status}"
    return {"passed": status == 200, "detail": detail}


def verify(
    params: Params,
    paths: Paths,
    environment: Environment,
    url: str,
    bento: str,
    model: Model,
    rows: pd.DataFrame,
    load_test: bool,
) -> dict[str, Any]:
    """Run the checks in order; raise CheckFailed naming the first that fails.

    `rows` are the held-out rows published with the bento (release_store.smoke_rows).
    """
    results: dict[str, Any] = {}
    results["health"] = health(url)
    if not results["health"]["passed"]:
        raise CheckFailed(f"health: {results['health']['detail']} at {url}", results)
    found = smoke.check(params, url, model, bento, rows)
    # The checks are a JSON document in the deploy record (records.py).
    results["smoke"] = found.model_dump(mode="json")
    if not found.passed:
        raise CheckFailed(
            f"smoke: the service at {url} (serving {found.serving}) does not answer like the "
            f"registered model version it packs (max abs diff {found.max_abs_diff:.3g} "
            f"over {found.rows} held-out rows)",
            results,
        )
    if load_test:
        record = smoke.to_records(rows.head(1), model.spec.names)[0]
        outcome = loadtest.run(params, paths, url, environment, record)
        results["loadtest"] = {
            key: outcome[key]
            for key in ("passed", "rps", "p50_ms", "p95_ms", "p99_ms", "errors", "requests")
        }
        results["loadtest"]["failures"] = outcome["failures"]
        if not outcome["passed"]:
            raise CheckFailed("load test gates not met: " + "; ".join(outcome["failures"]), results)
    return results
