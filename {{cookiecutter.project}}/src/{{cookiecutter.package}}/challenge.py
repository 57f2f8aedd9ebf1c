"""Stage `challenge`: the version `make train` just registered (the challenger) against the
version aliased `production` in the release store (the champion).

Both are scored on the same rows: the held-out split `make evaluate` uses and, when it has
at least `retraining.min_labels` rows, the labelled window of served traffic `make monitor`
wrote (reports/monitoring/labelled.parquet). The challenger wins only if it beats the
champion on the primary metric by `retraining.margin` (a fraction of the champion's score)
on every set compared; with no champion it wins by default. A loser is a result, not an
error: it is recorded with its reason, and `make retrain` packages only a winner.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import LOWER_IS_BETTER, PROJECT, Params, Paths
from .evaluation_report import EvaluationReport

# Imported where used: `challenge verdict`, a CI step, reads a JSON file and needs none
# of them (scikit-learn, MLflow and LightGBM take seconds to import).
if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

    from .model import Model
    from .model_card import FeatureSpec

LABELS = {"held_out": "held-out split", "labelled": "labelled window"}
RETRAIN_TAGS = ("retrain.reason", "retrain.window", "retrain.monitor_run_id")


def compare(metric: str, challenger: float, champion: float, margin: float) -> dict[str, Any]:
    """How far the challenger is ahead of the champion (positive: better, whichever way the
    metric points) and how far it must be: `margin` of the champion's score."""
    ahead = champion - challenger if metric in LOWER_IS_BETTER else challenger - champion
    needed = margin * abs(champion)
    return {"ahead": ahead, "needed": needed, "beats": bool(ahead > 0 and ahead >= needed)}


def decide(
    metric: str,
    sets: dict[str, dict[str, Any]],
    margin: float,
    min_labels: int,
    champion: str | None,
) -> dict[str, Any]:
    """The verdict from each set's primary scores ({"rows", "challenger", "champion"} and,
    when a set could not be scored, "error"). A labelled window of fewer than `min_labels`
    rows is left out, so it can neither win nor lose the challenge."""
    compared, notes = {}, []
    for name, scores in sets.items():
        if name == "labelled" and scores["rows"] < min_labels:
            notes.append(
                f"labelled window not compared: {scores['rows']} rows, fewer than {min_labels}"
            )
        elif scores.get("error"):
            notes.append(f"{LABELS[name]} not compared: {scores['error']}")
        elif champion is not None:
            compared[name] = compare(metric, scores["challenger"], scores["champion"], margin)
    if champion is None:
        reason = f"no version of {PROJECT} is aliased production: the challenger wins by default"
        return {"winner": True, "reason": reason, "compared": {}, "notes": notes}
    if "held_out" not in compared:
        raise ValueError("the held-out split must be compared: " + "; ".join(notes))

    def said(name: str) -> str:
        found, scores = compared[name], sets[name]
        return (
            f"{LABELS[name]} ({scores['rows']} rows) {scores['challenger']:.4g} vs "
            f"{scores['champion']:.4g}, ahead by {found['ahead']:+.4g} (needs +{found['needed']:.4g})"
        )

    losing = [name for name, found in compared.items() if not found["beats"]]
    terms = f"champion version {champion} on {metric} by the {margin * 100:g}% margin"
    if losing:
        reason = f"does not beat {terms}: " + "; ".join(map(said, losing))
    else:
        reason = f"beats {terms}: " + "; ".join(map(said, compared))
    reason = "; ".join([reason, *notes])
    return {"winner": not losing, "reason": reason, "compared": compared, "notes": notes}


def read_labelled(path: Path, spec: FeatureSpec) -> pd.DataFrame:
    """The labelled rows (features and target) of a window; unlabelled rows dropped."""
    from . import tables

    frame = tables.read(path, "LABELLED")
    if spec.target not in frame:
        raise ValueError(f"LABELLED: {path.name} has no {spec.target!r} column (the labels)")
    return frame.dropna(subset=[spec.target]).reset_index(drop=True)


def champion_model(
    paths: Paths, spec: FeatureSpec, columns: Iterable[str]
) -> tuple[ModelVersion | None, Model | None, str | None]:
    """The version aliased production, its model (None if it cannot be scored like the
    challenger) and why not."""
    from . import registry
    from .evaluate import incomparable
    from .model import Model

    version = registry.production_version(paths)
    if version is None:
        return None, None, None
    booster, champion_spec = registry.load_version(paths, version)
    if reason := incomparable(champion_spec, spec, columns):
        return version, None, f"champion version {version.version} {reason}"
    return version, Model(booster, champion_spec), None


def score(model: Model, spec: FeatureSpec, frame: pd.DataFrame) -> dict[str, float]:
    from . import features
    from .evaluate import compute_metrics

    return compute_metrics(spec, features.encode_target(frame, spec), model.raw(frame))


def scored_sets(
    params: Params,
    spec: FeatureSpec,
    challenger: Model,
    champion: Model | None,
    sets: dict[str, pd.DataFrame],
) -> dict[str, Any]:
    """Every metric of both models on each set (a labelled window too small is not scored)."""
    scored: dict[str, dict[str, Any]] = {}
    for name, frame in sets.items():
        found: dict[str, Any] = {"rows": int(len(frame))}
        if name == "labelled" and len(frame) < params.retraining.min_labels:
            scored[name] = found
            continue
        if spec.classes is not None and not frame[spec.target].isin(spec.classes).all():
            unknown = sorted(map(str, set(frame[spec.target]) - set(spec.classes)))[:5]
            raise ValueError(f"{LABELS[name]} holds labels {unknown}, not classes {spec.classes}")
        needed = {*spec.names, *(champion.spec.names if champion else ())}
        if missing := sorted(needed - set(frame.columns)):
            scored[name] = {**found, "error": f"it lacks feature column(s) {missing}"}
            continue
        try:
            found["challenger"] = score(challenger, spec, frame)
            if champion is not None:
                found["champion"] = score(champion, spec, frame)
        except ValueError as error:  # e.g. ROC AUC of a window holding one class only
            found = {"rows": found["rows"], "error": str(error)}
        scored[name] = found
    return scored


def run(params: Params, paths: Paths, labelled: Path | None = None) -> dict[str, Any]:
    """Score both models on the same sets, decide, write reports/challenge.json, record it."""
    from . import data, features, registry
    from .evaluate import PRIMARY, check_same_split
    from .model import Model

    if not paths.model_file.exists():
        raise FileNotFoundError(f"{paths.model_file} is missing: run `make train` first")
    challenger = Model.load(paths.model_file, paths.model_card)
    card = json.loads(paths.model_card.read_text())
    check_same_split(card, params, paths)
    evaluation = (
        EvaluationReport.read(paths.evaluation_report) if paths.evaluation_report.exists() else None
    )
    if (
        evaluation is None
        or evaluation.model_version != str(card["model_version"])
        or not evaluation.passed
    ):
        raise RuntimeError(
            f"model version {card['model_version']} has not passed `make evaluate` "
            f"({paths.evaluation_report}): a challenger must pass its gates first"
        )
    registry.configure(paths)
    spec = challenger.spec
    sets = {"held_out": features.split(data.load_raw(paths), params)[1]}
    source = labelled or paths.labelled_window
    if labelled is not None or source.exists():
        sets["labelled"] = read_labelled(source, spec)
    version, champion, why_not = champion_model(paths, spec, sets["held_out"].columns)
    if version is not None and str(version.version) == str(card["model_version"]):
        raise RuntimeError(
            f"model version {version.version} in {paths.models} is the champion itself: "
            "train a new version first (make retrain)"
        )
    metric = PRIMARY[spec.task]
    scored = scored_sets(params, spec, challenger, champion, sets)
    if why_not:
        verdict: dict[str, Any] = {"winner": False, "compared": {}, "notes": [],
                   "reason": f"{why_not}: not replaced automatically, a person decides"}  # fmt: skip
    else:
        primary = {
            name: {"rows": found["rows"], "error": found.get("error"),
                   **{who: found[who][metric] for who in ("challenger", "champion") if who in found}}
            for name, found in scored.items()
        }  # fmt: skip
        verdict = decide(
            metric, primary, params.retraining.margin, params.retraining.min_labels,
            None if version is None else str(version.version),
        )  # fmt: skip
    for name, found in verdict["compared"].items():
        scored[name].update(found)
    if "labelled" in scored:
        scored["labelled"]["source"] = str(source)
    tags = registry.client(paths).get_model_version(PROJECT, card["model_version"]).tags
    result = {
        "winner": verdict["winner"],
        "reason": verdict["reason"],
        "metric": metric,
        "lower_is_better": metric in LOWER_IS_BETTER,
        "margin": params.retraining.margin,
        "min_labels": params.retraining.min_labels,
        "challenger": {"version": str(card["model_version"]), "run_id": card["run_id"]},
        "champion": None if version is None else {"version": str(version.version), "run_id": version.run_id},
        "sets": scored,
        "retrain": {key.removeprefix("retrain."): tags[key] for key in RETRAIN_TAGS if key in tags},
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    paths.reports.mkdir(parents=True, exist_ok=True)
    paths.challenge_report.write_text(json.dumps(result, indent=2) + "\n")
    record(paths, result)
    return result


def record(paths: Paths, result: dict[str, Any]) -> None:
    """The verdict as tags on the challenger's model version and its training run, with the
    scores as metrics of that run and challenge.json as its artifact."""
    from . import registry

    client = registry.client(paths)
    version, run_id = result["challenger"]["version"], result["challenger"]["run_id"]
    champion = result["champion"]["version"] if result["champion"] else "none"
    tags = {
        "challenge.result": "won" if result["winner"] else "lost",
        "challenge.reason": result["reason"],
        "challenge.champion_version": champion,
        "challenge.margin": f"{result['margin']:g}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(PROJECT, version, key, value)
        client.set_tag(run_id, key, value)
    client.log_metric(run_id, "challenge.won", float(result["winner"]))
    for name, found in result["sets"].items():
        for who in ("challenger", "champion"):
            if who in found:
                client.log_metric(
                    run_id,
                    f"challenge.{name}.{who}_{result['metric']}",
                    found[who][result["metric"]],
                )
    client.log_artifact(run_id, str(paths.challenge_report), "challenge")


def format_result(result: dict[str, Any]) -> str:
    """A table of both models' primary scores per set, then the one-line verdict."""
    metric, champion = result["metric"], result["champion"]
    against = f"champion version {champion['version']}" if champion else "no champion"
    way = "lower" if result["lower_is_better"] else "higher"
    lines = [
        f"challenger version {result['challenger']['version']} against {against} on {metric} "
        f"({way} is better), margin {result['margin'] * 100:g}%",
        "",
        f"{'set':<17}{'rows':>6}{'challenger':>12}{'champion':>10}{'ahead':>10}{'needs':>10}  result",
    ]
    for name, found in result["sets"].items():
        row = f"{LABELS[name]:<17}{found['rows']:>6}"
        if "challenger" in found:
            row += f"{found['challenger'][metric]:>12.4f}"
            row += f"{found['champion'][metric]:>10.4f}" if "champion" in found else f"{'-':>10}"
        else:
            row += f"{'-':>12}{'-':>10}"
        if "beats" in found:
            row += f"{found['ahead']:>+10.4f}{found['needed']:>+10.4f}  "
            row += "beats" if found["beats"] else "does not beat"
        else:
            row += f"{'':>20}  not compared"
        lines.append(row)
    lines += ["", ("WINNER: " if result["winner"] else "LOST: ") + result["reason"]]
    return "\n".join(line.rstrip() for line in lines)


def verdict(paths: Paths) -> dict[str, str]:
    """The last challenge as key=value pairs for CI (GitHub's $GITHUB_OUTPUT): the bento is
    named only when `make package` built it for the challenger."""
    if not paths.challenge_report.exists():
        raise FileNotFoundError(f"{paths.challenge_report} is missing: run `make challenge` first")
    result = json.loads(paths.challenge_report.read_text())
    built = paths.dist / "bento.json"
    bento = json.loads(built.read_text()) if built.exists() else {}
    ours = str(bento.get("model_version")) == result["challenger"]["version"]
    return {
        "winner": str(result["winner"]).lower(),
        "challenger_version": result["challenger"]["version"],
        "champion_version": result["champion"]["version"] if result["champion"] else "none",
        "bento": bento["tag"] if ours and result["winner"] else "",
        "reason": result["reason"],
    }
