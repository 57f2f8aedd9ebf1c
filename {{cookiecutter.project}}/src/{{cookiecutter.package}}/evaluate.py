"""Stage `evaluate`: score the held-out rows and check the gates.

Gates: (1) metric thresholds from params.yaml, (2) the model beats a trivial baseline,
(3) it does not trail the version aliased `production` by more than the tolerance.
A failed gate is reported, not raised: the CLI prints the report and exits 1.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier, DummyRegressor

from . import data, features, plots, registry
from .config import LOWER_IS_BETTER, PROJECT, Params, Paths
from .evaluation_report import Baseline, EvaluationReport, Gate, GateName, ProductionScore
from .model import Model, class_indices
from .model_card import FeatureSpec

# The metric each comparison (baseline, production) is made on.
PRIMARY = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}
BASELINE = {"binary": "prior", "multiclass": "prior", "regression": "mean"}


def compute_metrics(spec: FeatureSpec, y_true: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """The task's metrics from booster output (P(positive), class probabilities or values)."""
    if spec.task == "binary":
        labels = class_indices(raw, spec)
        scores = {
            "roc_auc": skm.roc_auc_score(y_true, raw),
            "f1": skm.f1_score(y_true, labels, zero_division=0),
            "accuracy": skm.accuracy_score(y_true, labels),
            "precision": skm.precision_score(y_true, labels, zero_division=0),
            "recall": skm.recall_score(y_true, labels, zero_division=0),
            "log_loss": skm.log_loss(y_true, raw, labels=[0, 1]),
        }
    elif spec.task == "multiclass":
        labels = class_indices(raw, spec)
        scores = {
            "f1_macro": skm.f1_score(y_true, labels, average="macro", zero_division=0),
            "accuracy": skm.accuracy_score(y_true, labels),
            "log_loss": skm.log_loss(y_true, raw, labels=list(range(len(spec.classes or [])))),
        }
    else:
        scores = {
            "rmse": skm.root_mean_squared_error(y_true, raw),
            "mae": skm.mean_absolute_error(y_true, raw),
            "r2": skm.r2_score(y_true, raw),
        }
    return {name: float(value) for name, value in scores.items()}


def baseline_metrics(
    spec: FeatureSpec, train_df: pd.DataFrame, test_df: pd.DataFrame
) -> dict[str, float]:
    """A dummy model (class prior / mean) fitted on the same training split."""
    x_train = features.to_features(train_df, spec)
    x_test = features.to_features(test_df, spec)
    y_train = features.encode_target(train_df, spec)
    if spec.task == "regression":
        raw = DummyRegressor(strategy="mean").fit(x_train, y_train).predict(x_test)
    else:
        dummy = DummyClassifier(strategy="prior").fit(x_train, y_train)
        probabilities = np.zeros((len(x_test), len(spec.classes or [])))
        probabilities[:, dummy.classes_] = dummy.predict_proba(x_test)
        raw = probabilities[:, 1] if spec.task == "binary" else probabilities
    return compute_metrics(spec, features.encode_target(test_df, spec), raw)


def _better(metric: str, measured: float, bound: float, strict: bool = False) -> bool:
    if metric in LOWER_IS_BETTER:
        return measured < bound if strict else measured <= bound
    return measured > bound if strict else measured >= bound


def _gate(
    name: GateName,
    metric: str,
    measured: float | None,
    bound: float | None,
    passed: bool,
    message: str,
) -> Gate:
    return Gate(
        name=name,
        metric=metric,
        measured=measured,
        bound=bound,
        passed=passed,
        message=None if passed else message,
    )


def threshold_gates(thresholds: dict[str, float], scores: dict[str, float]) -> list[Gate]:
    """Minimums, or maximums for error metrics; an unknown metric name fails its gate."""
    gates: list[Gate] = []
    for metric, bound in thresholds.items():
        if metric not in scores:
            message = (
                f"threshold {metric}: no such metric for this task; use one of {sorted(scores)}"
            )
            gates.append(_gate("threshold", metric, None, bound, False, message))
            continue
        measured = scores[metric]
        if metric in LOWER_IS_BETTER:
            message = (
                f"threshold {metric}: {measured:.4g} > maximum {bound:.4g} "
                f"(over by {measured - bound:.4g})"
            )
        else:
            message = (
                f"threshold {metric}: {measured:.4g} < minimum {bound:.4g} "
                f"(short by {bound - measured:.4g})"
            )
        gates.append(
            _gate("threshold", metric, measured, bound, _better(metric, measured, bound), message)
        )
    return gates


def baseline_gate(task: str, scores: dict[str, float], baseline: dict[str, float]) -> Gate:
    """The model must be strictly better than the dummy on the primary metric."""
    metric = PRIMARY[task]
    measured, bound = scores[metric], baseline[metric]
    message = (
        f"baseline {metric}: model {measured:.4g} does not beat the dummy "
        f"({BASELINE[task]}) {bound:.4g} (behind by {abs(measured - bound):.4g})"
    )
    return _gate(
        "baseline", metric, measured, bound, _better(metric, measured, bound, True), message
    )


def production_gate(
    task: str, scores: dict[str, float], production: ProductionScore, tolerance: float
) -> Gate:
    """The candidate may trail production by at most `tolerance`, a fraction of its score."""
    metric = PRIMARY[task]
    if production.error or production.metrics is None:
        message = f"production {metric}: {production.error}"
        return _gate("production", metric, scores[metric], None, False, message)
    measured, reference = scores[metric], production.metrics[metric]
    lower = metric in LOWER_IS_BETTER
    bound = reference * (1 + tolerance) if lower else reference * (1 - tolerance)
    message = (
        f"production {metric}: {measured:.4g} trails production version "
        f"{production.version} ({reference:.4g}) by {abs(measured - reference):.4g}, "
        f"beyond the {tolerance:.0%} tolerance (bound {bound:.4g})"
    )
    return _gate("production", metric, measured, bound, _better(metric, measured, bound), message)


def score_production(
    paths: Paths, spec: FeatureSpec, test_df: pd.DataFrame, y_true: np.ndarray
) -> ProductionScore | None:
    """Metrics of the version aliased `production` on the same held-out rows, if any."""
    version = registry.production_version(paths)
    if version is None:
        return None
    found = ProductionScore(version=str(version.version), run_id=version.run_id, metrics=None)
    booster, production_spec = registry.load_version(paths, version)
    if reason := incomparable(production_spec, spec, test_df.columns):
        return found.model_copy(update={"error": f"production version {version.version} {reason}"})
    raw = Model(booster, production_spec).raw(test_df)
    return found.model_copy(update={"metrics": compute_metrics(spec, y_true, raw)})


def incomparable(production: FeatureSpec, spec: FeatureSpec, columns: Any) -> str | None:
    """Why the production model cannot be scored like `spec` on rows with these columns.

    Not comparable means a human decides (retire the alias, or keep the old model)."""
    if missing := sorted(set(production.names) - set(columns)):
        return f"needs columns the data lacks: {missing}"
    return "has other classes" if production.classes != spec.classes else None


def check_same_split(card: dict[str, Any], params: Params, paths: Paths) -> None:
    """Refuse to score a model on rows it may have trained on (other data, seed or split)."""
    current = data.load_fingerprint(paths)["sha256"]
    if card["data_sha256"] != current:
        raise ValueError(
            f"{paths.model_card} was trained on data {card['data_sha256'][:12]}, but data/raw "
            f"is now {current[:12]}: run `make train` before `make evaluate`"
        )
    trained = Params.model_validate(card["params"])
    if (trained.seed, trained.data) != (params.seed, params.data):
        raise ValueError(
            f"params.yaml seed or data section changed since {paths.model_card} was trained, "
            "so its held-out rows would differ: run `make train` before `make evaluate`"
        )


def evaluate(params: Params, paths: Paths, defer_to_challenge: bool = False) -> EvaluationReport:
    """Score models/ on the held-out split, check every gate, write the report and plots.

    `defer_to_challenge` (`make retrain`): the no-regression gate is reported but does not
    fail; `make challenge` then asks more of the model (beat production by a margin) and
    records a loser as a result rather than a failed pipeline.
    """
    if not paths.model_file.exists():
        raise FileNotFoundError(f"{paths.model_file} is missing: run `make train` first")
    model = Model.load(paths.model_file, paths.model_card)
    card = json.loads(paths.model_card.read_text())
    check_same_split(card, params, paths)
    spec = model.spec
    train_df, test_df = features.split(data.load_raw(paths), params)
    y_true = features.encode_target(test_df, spec)
    raw = model.raw(test_df)
    scores = compute_metrics(spec, y_true, raw)
    baseline = baseline_metrics(spec, train_df, test_df)

    registry.configure(paths)
    production = score_production(paths, spec, test_df, y_true)
    gates = threshold_gates(params.evaluation.thresholds, scores)
    gates.append(baseline_gate(spec.task, scores, baseline))
    if production is not None:
        tolerance = params.evaluation.regression_tolerance
        gate = production_gate(spec.task, scores, production, tolerance)
        gates.append(gate.model_copy(update={"advisory": defer_to_challenge}))

    written = plots.write_all(spec, model.booster, y_true, raw, paths.reports)
    failures = [gate.message or "" for gate in gates if not gate.passed and not gate.advisory]
    report = EvaluationReport(
        passed=not failures,
        failures=failures,
        metrics=scores,
        baseline=Baseline(strategy=BASELINE[spec.task], metrics=baseline),
        production=production,
        gates=gates,
        primary_metric=PRIMARY[spec.task],
        model_version=str(card["model_version"]),
        run_id=card["run_id"],
        rows=len(test_df),
        plots=[str(path.relative_to(paths.root)) for path in written],
    )
    report.write(paths.evaluation_report)
    log_to_mlflow(paths, card, report)
    return report


def log_to_mlflow(paths: Paths, card: dict[str, Any], report: EvaluationReport) -> None:
    """Add the evaluation to the training run and tag the registered version with it."""
    test_metrics = {f"test_{name}": value for name, value in report.metrics.items()}
    primary = report.primary_metric
    with mlflow.start_run(run_id=card["run_id"]):
        mlflow.log_metrics(
            {**test_metrics, f"baseline_{primary}": report.baseline.metrics[primary]}
        )
        mlflow.log_metric("gates_passed", float(report.passed))
        mlflow.log_artifact(str(paths.evaluation_report), artifact_path="evaluation")
        for plot in report.plots:
            mlflow.log_artifact(str(paths.root / plot), artifact_path="evaluation")
    client = registry.client(paths)
    name = card.get("model_name", PROJECT)
    for key, value in test_metrics.items():
        client.set_model_version_tag(name, card["model_version"], key, f"{value:.6g}")
    client.set_model_version_tag(
        name, card["model_version"], "gates_passed", str(report.passed).lower()
    )


def format_report(report: EvaluationReport) -> str:
    """A plain-text table: metric, value, gate bound, verdict; then the comparisons."""
    bounds = {g.metric: g for g in report.gates if g.name == "threshold"}
    lines = [f"model version {report.model_version} on {report.rows} held-out rows", ""]
    lines.append(f"{'metric':<12}{'value':>10}  {'gate':<16}{'result':<6}")
    for metric, value in report.metrics.items():
        gate = bounds.get(metric)
        if gate is None or gate.bound is None:
            bound, verdict = "", ""
        else:
            kind = "max" if metric in LOWER_IS_BETTER else "min"
            bound, verdict = f"{kind} {gate.bound:.4g}", "pass" if gate.passed else "FAIL"
        lines.append(f"{metric:<12}{value:>10.4f}  {bound:<16}{verdict:<6}")
    for gate in report.gates:
        if gate.name == "threshold" and gate.metric not in report.metrics:
            lines.append(f"{gate.metric:<12}{'-':>10}  {'unknown metric':<16}FAIL")
    lines.append("")
    primary = report.primary_metric
    value = report.metrics[primary]
    for gate in report.gates:
        if gate.name == "baseline":
            other = report.baseline.metrics[primary]
            label = f"dummy ({report.baseline.strategy})"
        elif gate.name == "production" and report.production and report.production.metrics:
            other = report.production.metrics[primary]
            label = f"production v{report.production.version}"
        else:
            continue
        verdict = "pass" if gate.passed else "FAIL"
        if gate.advisory:
            verdict += " (advisory: make challenge decides)"
        lines.append(f"{primary}: model {value:.4f} vs {label} {other:.4f}  {verdict}")
    if report.production is None:
        lines.append("no version aliased 'production' yet: no-regression gate skipped")
    lines.append("")
    lines.append("PASSED" if report.passed else "FAILED: " + "; ".join(report.failures))
    return "\n".join(line.rstrip() for line in lines)
