"""Stage `monitor`: a window of served data against the serving model's training data.

The log read is the environment's (`log_folder`); the serving model is the version aliased
after that environment in the release store (`production` by default, or one named with
--model-version); its training run logged the reference (`monitoring/reference.parquet`:
training rows, target and the model's predictions). Per window: drift of each feature and
of the prediction (drift.py), the expectation suite on the served rows, and, with labels
joined by `make feedback`, the model scored on its traffic. Each window is recorded as a
run of the `<project>-monitoring` MLflow experiment tagged with the model version: that is
the history the k-of-N retrain rule reads, from any machine pointed at the same store.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from . import drift, features, registry, served_data
from .config import LOWER_IS_BETTER, PROJECT, Params, Paths
from .evaluate import PRIMARY, compute_metrics, threshold_gates
from .model_card import FeatureSpec

EXPERIMENT = f"{PROJECT}-monitoring"


def serving_version(
    paths: Paths, explicit: str | None, environment: str | None = None
) -> ModelVersion:
    """The version named, else the one aliased after `environment` (default production)."""
    if explicit:
        return registry.client(paths).get_model_version(PROJECT, explicit)
    alias = environment or registry.PRODUCTION
    found = registry.version_by_alias(paths, alias)
    if found is None:
        raise RuntimeError(
            f"no model version of {PROJECT} is aliased {alias!r} in "
            f"{paths.mlflow_uri}: deploy to {alias} first, or pass --model-version"
        )
    return found


def log_folder(params: Params, paths: Paths, environment: str | None) -> Path:
    """The prediction log of `environment`: a lasting host's in its state_dir, any other's
    in monitoring.path/<environment> (where local servers write, and where to copy a
    cluster's); without an environment, monitoring.path itself (what `make serve` writes)."""
    if environment is None:
        return paths.monitoring_log(params.monitoring)
    if (root := _host_root(paths, environment)) is not None:
        return root / "monitoring"
    return paths.monitoring_log(params.monitoring, environment)


def feedback_store(paths: Paths, environment: str | None) -> Path:
    """Where `feedback` keeps the labels joined to `environment`'s log: on a lasting host,
    beside its log (the scheduled monitor job reads both on the host's runner); else
    data/feedback/."""
    if environment is not None and (root := _host_root(paths, environment)) is not None:
        return root / "feedback" / "labels.parquet"
    return paths.feedback


def _host_root(paths: Paths, environment: str) -> Path | None:
    """The state folder of `environment` when it is a lasting host (target: host)."""
    from .deploy import environments, host

    found = environments.get(paths, environment)
    return host.layout(found).root if found.deploy.target == "host" else None


def load_reference(paths: Paths, version: ModelVersion) -> tuple[pd.DataFrame, FeatureSpec]:
    """The training rows (with predictions) and feature spec the version's run logged."""
    spec = FeatureSpec.model_validate(
        mlflow.artifacts.load_dict(
            registry.run_artifact(paths, registry.training_run(version), registry.SPEC_ARTIFACT)
        )
    )
    uri = registry.run_artifact(paths, registry.training_run(version), registry.REFERENCE_ARTIFACT)
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder)
            reference = pd.read_parquet(local)
    except (OSError, mlflow.exceptions.MlflowException) as error:
        raise RuntimeError(
            f"model version {version.version} has no training reference "
            f"({registry.REFERENCE_ARTIFACT} in run {version.run_id}): it was trained before "
            "monitoring existed; retrain it"
        ) from error
    return reference, spec


def drift_columns(spec: FeatureSpec) -> dict[str, str]:
    """Every feature, then the prediction (a class for classifiers, a value for regression)."""
    columns: dict[str, str] = {f.name: f.kind for f in spec.features}
    columns["prediction"] = "numeric" if spec.task == "regression" else "categorical"
    return columns


def served_frame(window: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The window's features typed like training data (categories as category)."""
    frame = window[spec.names].copy()
    for feature in spec.features:
        if feature.kind == "categorical":
            frame[feature.name] = frame[feature.name].astype("string").astype("category")
        else:
            frame[feature.name] = pd.to_numeric(frame[feature.name]).astype("float64")
    return frame


def quality(paths: Paths, spec: FeatureSpec, frame: pd.DataFrame, folder: Path) -> dict[str, Any]:
    """The committed expectation suite, narrowed to the features, on the served rows."""
    from . import validation
    from .predict import feature_suite

    suite = feature_suite(validation.load_suite(paths), spec)
    outcome = validation.check_frame(suite, frame, folder, "served window", str(paths.suite))
    failed = [
        f"{check.get('column') or '(table)'}: {check['expectation']} ({check['observed']})"
        for check in outcome["results"]
        if not check["success"]
    ]
    return {"success": outcome["success"], "failures": failed, "docs": outcome["docs_index"]}


def labelled(
    params: Params,
    paths: Paths,
    version: ModelVersion,
    spec: FeatureSpec,
    window: pd.DataFrame,
    environment: str | None = None,
) -> dict[str, Any]:
    """The model scored on the window's labelled rows against its training-time metrics."""
    store = feedback_store(paths, environment)
    rows = served_data.with_labels(window, store, spec.target).dropna(subset=[spec.target])
    # Kept for `make challenge` (a CI artifact), empty when the window has no labels: a
    # later challenge scores champion and challenger on this window's labelled rows.
    paths.labelled_window.parent.mkdir(parents=True, exist_ok=True)
    served_frame(rows, spec).assign(**{spec.target: rows[spec.target].to_numpy()}).to_parquet(
        paths.labelled_window, index=False
    )
    needed = params.monitoring.performance.min_labels
    result: dict[str, Any] = {
        "rows": int(len(rows)), "min_labels": needed, "failed": False,
        "labelled_rows": str(paths.labelled_window),
    }  # fmt: skip
    if len(rows) < needed:
        result["verdict"] = f"{len(rows)} labelled rows, fewer than {needed}: no verdict"
        return result
    if (
        spec.classes is not None
        and not (unknown := rows[~rows[spec.target].isin(spec.classes)]).empty
    ):
        raise ValueError(
            f"labels hold {sorted(map(str, unknown[spec.target].unique()))[:5]}, not classes "
            f"of the model ({spec.classes})"
        )
    y_true = features.encode_target(rows, spec)
    if spec.task == "regression":
        raw = rows["prediction"].to_numpy(dtype="float64")
    else:
        probabilities = np.array(rows["probabilities"].tolist(), dtype="float64")
        raw = probabilities[:, 1] if spec.task == "binary" else probabilities
    scores = compute_metrics(spec, y_true, raw)
    trained = registry.client(paths).get_run(registry.training_run(version)).data.metrics
    primary = PRIMARY[spec.task]
    reference = trained.get(f"test_{primary}")
    gates = [
        gate.model_dump(exclude={"advisory"})
        for gate in threshold_gates(params.evaluation.thresholds, scores)
    ]
    if reference is not None:
        tolerance = params.monitoring.performance.tolerance
        lower = primary in LOWER_IS_BETTER
        bound = reference * (1 + tolerance) if lower else reference * (1 - tolerance)
        passed = scores[primary] <= bound if lower else scores[primary] >= bound
        gates.append(
            {"gate": "training", "metric": primary, "value": scores[primary], "bound": bound,
             "passed": bool(passed),
             "message": f"labelled {primary} {scores[primary]:.4g} vs {reference:.4g} at "
                        f"training (bound {bound:.4g})"}
        )  # fmt: skip
    failures = [gate["message"] for gate in gates if not gate["passed"]]
    result.update(
        metrics=scores, training_metrics={primary: reference}, gates=gates, failed=bool(failures),
        verdict="; ".join(failures) or "meets its gates",
    )  # fmt: skip
    return result


def history(paths: Paths, model_version: str, limit: int) -> list[dict[str, Any]]:
    """The model version's recorded windows, oldest first (at most `limit`)."""
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    runs = registry.client(paths).search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.model_version = '{model_version}'",
        order_by=["attributes.start_time DESC"],
        max_results=4 * limit,
    )
    windows: dict[str, dict[str, Any]] = {}  # a window monitored twice counts once: its latest run
    for run in runs:
        name = run.data.tags.get("window_id", run.info.run_id)
        windows.setdefault(
            name,
            {"window": name, "drifted": run.data.tags.get("drifted") == "true",
             "drifted_share": run.data.metrics.get("drifted_share", 0.0)},
        )  # fmt: skip
    return list(windows.values())[:limit][::-1]


def run(
    params: Params,
    paths: Paths,
    model_version: str | None = None,
    rows: int | None = None,
    environment: str | None = None,
) -> dict[str, Any]:
    """Compare the latest window of `environment`'s log with the reference; record it;
    decide. Writes the reports."""
    from . import monitor_report

    registry.configure(paths)
    version = serving_version(paths, model_version, environment)
    reference, spec = load_reference(paths, version)
    log = served_data.read_log(log_folder(params, paths, environment), spec.names)
    window = served_data.window(log, version.version, rows or params.monitoring.window_rows)
    name = served_data.window_id(window)
    folder = paths.monitoring_reports / name
    frame = served_frame(window, spec)
    compared = drift.compare(
        reference, frame.assign(prediction=window["prediction"]), drift_columns(spec),
        params.monitoring.drift,
    )  # fmt: skip
    performance = labelled(params, paths, version, spec, window, environment)
    rule = params.monitoring.decision
    past = [w for w in history(paths, str(version.version), rule.n) if w["window"] != name]
    decision = drift.decide(
        [w["drifted"] for w in past] + [compared["drifted"]], rule, performance["failed"]
    )
    result: dict[str, Any] = {
        "window": name,
        "model_version": str(version.version),
        "run_id": version.run_id,
        "rows": int(len(window)),
        "first": str(window["timestamp"].iloc[0]),
        "last": str(window["timestamp"].iloc[-1]),
        "reference_rows": int(len(reference)),
        "drift": compared,
        "quality": quality(paths, spec, frame, folder / "validation"),
        "performance": performance,
        "history": [*past, {"window": name, "drifted": compared["drifted"],
                            "drifted_share": compared["drifted_share"]}][-rule.n :],
        "decision": decision,
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    result["plots"] = monitor_report.plots(reference, frame, window, spec, result, folder)
    result["html"] = str(monitor_report.html(result, folder))
    report = paths.monitoring_reports / f"{name}.json"
    report.write_text(json.dumps(result, indent=2, default=str) + "\n")
    result["json"] = str(report)
    # The run id links a retraining to the window that decided it (`make retrain REASON=drift`).
    result["monitor_run_id"] = record(paths, result, folder, report)
    report.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(monitor_report.markdown(result) + "\n")
    return result


def record(paths: Paths, result: dict[str, Any], folder: Path, report: Path) -> str:
    """The window as an MLflow run against the model version, plus tags on the version;
    returns the run's id."""
    experiment = registry.setup_experiment(paths, EXPERIMENT)
    tags = {
        "model_version": result["model_version"],
        "model_run_id": result["run_id"],
        "window_id": result["window"],
        "drifted": str(result["drift"]["drifted"]).lower(),
        "retrain": str(result["decision"]["retrain"]).lower(),
    }
    metrics = {
        "rows": result["rows"],
        "drifted_share": result["drift"]["drifted_share"],
        "drifted_columns": len(result["drift"]["drifted_columns"]),
        "quality_passed": float(result["quality"]["success"]),
        **{f"labelled_{k}": v for k, v in result["performance"].get("metrics", {}).items()},
    }
    for column in result["drift"]["columns"]:
        metrics[f"drift_score.{_metric_name(column['column'])}"] = column["score"]
    with mlflow.start_run(
        experiment_id=experiment, run_name=f"window {result['window']}", tags=tags
    ) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report))
        mlflow.log_artifacts(str(folder), artifact_path=result["window"])
    client = registry.client(paths)
    for key, value in (("monitoring.window", result["window"]), ("monitoring.drifted", tags["drifted"]),
                       ("monitoring.retrain", tags["retrain"])):  # fmt: skip
        client.set_model_version_tag(PROJECT, result["model_version"], key, value)
    run_id: str = run.info.run_id
    return run_id


def _metric_name(column: str) -> str:
    """MLflow metric names allow letters, digits and _-./ and spaces."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in column)
