"""Why a retraining ran: `make retrain REASON=drift|schedule|manual`.

Resolved before training starts (a bad REASON or monitor result costs no training), then
recorded as tags on the training run and on the model version it registers. For drift,
the monitor result that decided it names the window and the monitoring run in MLflow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .config import Paths

REASONS = ("drift", "schedule", "manual")
# `make monitor` names each result after its window, e.g. 20261201T101502.123Z.json.
WINDOW_RESULT = re.compile(r"\d{8}T\d{6}\.\d{3}Z\.json")


def latest_monitor_result(paths: Paths) -> Path:
    """The newest window's result in reports/monitoring/ (window ids sort by time)."""
    found = sorted(
        p for p in paths.monitoring_reports.glob("*.json") if WINDOW_RESULT.fullmatch(p.name)
    )
    if not found:
        raise FileNotFoundError(
            f"REASON=drift needs the monitor result that decided it: no `make monitor` result "
            f"in {paths.monitoring_reports}; pass MONITOR_REPORT=<file>"
        )
    return found[-1]


def read_monitor_result(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"MONITOR_REPORT: {path} does not exist")
    try:
        result = json.loads(path.read_text())
        decided = bool(result["decision"]["retrain"])
        fields = {key: str(result[key]) for key in ("window", "monitor_run_id", "model_version")}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"MONITOR_REPORT: {path} is not a result of `make monitor` (it needs window, "
            f"monitor_run_id, model_version and decision.retrain; {type(error).__name__}: {error})"
        ) from None
    return {**fields, "retrain": decided}


def why(paths: Paths, reason: str | None, monitor_report: Path | None) -> dict[str, str]:
    """The tags that say why this retraining runs; drift must point at a retrain decision."""
    reason = (reason or "manual").strip()
    if reason not in REASONS:
        raise ValueError(f"REASON: {reason!r} is not one of {', '.join(REASONS)}")
    tags = {"retrain.reason": reason}
    if reason != "drift" and monitor_report is None:
        return tags
    path = monitor_report or latest_monitor_result(paths)
    result = read_monitor_result(path)
    if reason == "drift" and not result["retrain"]:
        raise ValueError(
            f"REASON=drift, but the monitor result {path} (window {result['window']}) did not "
            "decide to retrain: pass the result that did, or REASON=manual"
        )
    return {
        **tags,
        "retrain.window": result["window"],
        "retrain.monitor_run_id": result["monitor_run_id"],
        "retrain.monitored_version": result["model_version"],
    }
