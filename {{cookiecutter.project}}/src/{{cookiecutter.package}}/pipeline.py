"""The journey from data to production, stage by stage (`make pipeline`).

Each step runs one stage's library function and says what it did through `say`; the CLI's
stage commands are thin adapters over the same steps, so a stage reads the same whether it
runs alone or in the pipeline. A step that fails raises StageFailed with its message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .config import Params, Paths

# Imported where used: each stage's libraries load only when it runs.
if TYPE_CHECKING:
    from .deploy.kubernetes import DryRun
    from .deploy.records import DeployRecord
    from .evaluation_report import EvaluationReport
    from .infra import InfraResult
    from .smoke import SmokeResult

# say(text, tone): tone is "" (plain), "ok", "warn" or "heading"; the CLI colours it.
Say = Callable[..., None]
T = TypeVar("T")

# How far the pipeline's closing demo moves every numeric feature, in training standard
# deviations: a shift the default drift settings detect in nearly every window.
DEMO_SHIFT = 0.5


class StageFailed(RuntimeError):
    """A stage ran and its result is a failure (gates missed, a check disagreed)."""


def data(params: Params, paths: Paths, say: Say) -> dict[str, Any]:
    """Materialise the dataset into data/raw/ and fingerprint it."""
    from . import data as stage

    record = stage.materialise(params, paths)
    say(f"{record['rows']} rows, {len(record['columns'])} columns -> {record['path']}")
    if record["unlabelled_dropped"]:
        say(
            f"dropped {record['unlabelled_dropped']} rows without a label in "
            f"{params.data.target!r} (data.unlabelled: drop)"
        )
    elif record["unlabelled"]:
        say(
            f"{record['unlabelled']} rows have no label in {params.data.target!r}: "
            "`make validate` refuses them (data.unlabelled: refuse)",
            "warn",
        )
    say(f"fingerprint sha256:{record['sha256']}")
    return record


def validate(
    params: Params, paths: Paths, say: Say, data_file: Path | None = None
) -> dict[str, Any]:
    """Run the expectation suite; fail naming each failing column and expectation."""
    from . import validation

    outcome = validation.validate(params, paths, data_file)
    say(validation.format_table(outcome))
    if not outcome["success"]:
        raise StageFailed(validation.format_failures(outcome))
    return outcome


def train(
    params: Params, paths: Paths, say: Say, why: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train LightGBM (seeded), log it to MLflow and register a new model version."""
    from . import train as stage

    card = stage.train(params, paths, why)
    if why:
        say(", ".join(f"{key}={value}" for key, value in why.items()))
    say(f"model version {card['model_version']} (run {card['run_id']}) -> {paths.model_file}")
    return card


def evaluate(
    params: Params, paths: Paths, say: Say, defer_to_challenge: bool = False
) -> EvaluationReport:
    """Score the model against the gates; fail naming any failed gate."""
    from . import evaluate as stage

    report = stage.evaluate(params, paths, defer_to_challenge)
    say(stage.format_report(report))
    if not report.passed:
        raise StageFailed("evaluation gates failed: " + "; ".join(report.failures))
    return report


def package(params: Params, paths: Paths, say: Say, release: bool = True) -> dict[str, Any]:
    """Build the bento, export it to dist/ and (with `release`) release it."""
    from . import package as stage

    result = stage.build(params, paths, release=release)
    say(f"bento {result['tag']} -> {result['archive']}")
    if not release:
        say("not released: `release` publishes it to the release store")
    return result


def infra_check(params: Params, paths: Paths, say: Say, bento: str | None = None) -> InfraResult:
    """Serve the bento from a fresh venv of only its own requirements; it must answer alike."""
    from . import infra

    result = infra.check(params, paths, bento)
    say(f"fresh venv of the bento's requirements: {' '.join(result.requirements)}")
    if not result.passed or result.smoke is None:
        log = f" (server log: {result.log})" if result.log else ""
        raise StageFailed(f"{result.error}{log}")
    say(
        f"bento {result.bento} served from its own requirements answered "
        f"{result.smoke.rows} rows like the registered model ({result.seconds:.0f}s)",
        "ok",
    )
    return result


def loadtest(params: Params, paths: Paths, say: Say, url: str, env: str) -> dict[str, Any]:
    """Load test a running service with locust; fail naming each gate not met."""
    from . import loadtest as stage
    from .deploy.environments import get

    result = stage.run(params, paths, url, get(paths, env))
    say(stage.format_result(result))
    say(f"reports: {result['reports']}")
    if not result["passed"]:
        raise StageFailed("load test gates not met: " + "; ".join(result["failures"]))
    return result


def service_check(
    params: Params, paths: Paths, say: Say, env: str, port: int | None
) -> dict[str, Any]:
    """Serve the latest bento here, load test it against `env`'s gates, then stop it."""
    from .package import latest_bento
    from .serving import running_server

    with running_server(paths, latest_bento(paths), port) as url:
        return loadtest(params, paths, say, url, env)


def serve_and_smoke(params: Params, paths: Paths, port: int) -> SmokeResult:
    """Serve the bento `make package` built last and smoke-test it against models/: it
    must answer like them and name that bento."""
    from .model import Model
    from .package import latest_bento
    from .serving import running_server
    from .smoke import held_out_rows, served_like

    tag = latest_bento(paths)
    model = Model.load(paths.model_file, paths.model_card)
    with running_server(paths, tag, port) as url:
        return served_like(params, url, model, held_out_rows(params, paths), tag)


def deploy_step(
    params: Params,
    paths: Paths,
    say: Say,
    action: Callable[..., DeployRecord | DryRun],
    *args: object,
) -> DeployRecord | DryRun:
    """Run a deploy action (engine.deploy, promote, rollback); a refusal or failed check is
    StageFailed with its one line."""
    from .deploy.engine import DeployFailed, Refused, Unfinished, abort_on_signals

    abort_on_signals()
    try:
        record = action(params, paths, *args)
    except (Refused, DeployFailed, Unfinished) as error:
        raise StageFailed(str(error)) from None
    say(
        f"{record.action}: {record.bento} (model version {record.model_version}) "
        f"serves {record.environment} at {record.url}",
        "ok",
    )
    return record


def run(params: Params, paths: Paths, say: Say, port: int) -> None:
    """Data to a bento verified in every environment (local target), then a drift demo."""
    from .deploy import engine
    from .deploy.environments import load_all

    timings: list[tuple[str, float]] = []

    def timed(name: str, step: Callable[[], T]) -> T:
        say(f"== {name}", "heading")
        started = time.perf_counter()
        done = step()
        timings.append((name, time.perf_counter() - started))
        return done

    timed("data", lambda: data(params, paths, say))
    timed("validate", lambda: validate(params, paths, say))
    timed("train", lambda: train(params, paths, say))
    timed("evaluate", lambda: evaluate(params, paths, say))
    timed("package", lambda: package(params, paths, say))
    timed("infra check", lambda: infra_check(params, paths, say))
    result = timed("serve + smoke", lambda: serve_and_smoke(params, paths, port))
    if not result.passed:
        raise StageFailed(
            f"the bento served at {result.url} ({result.serving}) disagrees with the "
            f"in-process model (max abs diff {result.max_abs_diff:.3g})"
        )
    # Build once, promote the same bento: deploy to the first environment, promote onwards.
    environments = list(load_all(paths).values())
    for environment in environments:
        args: tuple[Any, ...]
        if environment.requires is None:
            step, args = "deploy", (engine.deploy, environment.name, None)
        else:
            step, args = "promote", (engine.promote, environment.name)
        timed(f"{step} {environment.name}", partial(deploy_step, params, paths, say, *args))
    say(f"\n{'stage':<20}{'seconds':>9}")
    for name, seconds in timings:
        say(f"{name:<20}{seconds:>9.1f}")
    say(f"{'total':<20}{sum(s for _, s in timings):>9.1f}\n")
    say(engine.format_status(engine.status(paths)))
    say("\nThe environments keep serving until `make down`.")
    say(f"bento {result.serving} answered {result.rows} rows like the in-process model", "ok")
    last = environments[-1]
    say(f"\n== monitor: a shifted window replayed to {last.name}", "heading")
    demo_drift(params, paths, last.name, last.url, say)


def demo_drift(params: Params, paths: Paths, environment: str, url: str, say: Say) -> None:
    """Replay a shifted window, join its labels, run `monitor` and show its report."""
    from . import monitor, replay, served_data
    from .monitor_report import table

    labels = paths.monitoring_reports / "demo-labels.csv"
    sent = replay.replay(
        params, paths, url, params.monitoring.window_rows, DEMO_SHIFT, params.seed, labels
    )
    folder = monitor.log_folder(params, paths, environment)
    served_data.join_feedback(
        replay.wait_logged(folder, sent["last_request"]),
        served_data.read_labels(labels, params.data.target),
        monitor.feedback_store(paths, environment), params.data.target,
    )  # fmt: skip
    result = monitor.run(params, paths, environment=environment)
    say(f"{sent['rows']} rows, numeric features +{DEMO_SHIFT:g} std, sent to {url}")
    say(table(result))
    say(f"drift report: {result['html']}", "ok")
