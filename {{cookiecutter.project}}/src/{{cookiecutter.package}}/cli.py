"""`{{ cookiecutter.project }}` command: one subcommand per stage, each behind a make target."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from .config import Params, Paths, load_params, use_project_stores

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
# Make passes BENTO= through the environment, never pasted into a command line.
BENTO_OPTION = typer.Option(envvar="BENTO", help="Bento tag (default: the latest built)")
# A retraining's inputs (`train --retrain`, `retrain`, `challenge run`), from Make too.
REASON_OPTION = typer.Option(envvar="REASON", help="Why it retrains: drift, schedule or manual")
MONITOR_REPORT_OPTION = typer.Option(
    envvar="MONITOR_REPORT",
    help="The `monitor` result that decided a retraining (default: the latest)",
)
LABELLED_OPTION = typer.Option(
    envvar="LABELLED",
    help="Labelled served rows (default: reports/monitoring/labelled.parquet, if any)",
)
# The switch that shows an expected error's traceback: --traceback, or TRACEBACK=1.
TRACEBACK_VARIABLE = "TRACEBACK"
_show_traceback = False


@app.callback()
def _options(
    traceback: Annotated[
        bool,
        typer.Option(
            "--traceback",
            help=f"Show an expected error's traceback, not only its one line "
            f"(or set {TRACEBACK_VARIABLE}=1, e.g. `make train {TRACEBACK_VARIABLE}=1`)",
        ),
    ] = False,
) -> None:
    global _show_traceback
    _show_traceback = traceback


def _setup() -> tuple[Params, Paths]:
    """Find the project, load params.yaml, point BentoML and MLflow at project stores."""
    paths = Paths.discover()
    use_project_stores(paths)
    return load_params(paths.params), paths


def _fail(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


TONES: dict[str, dict[str, Any]] = {
    "ok": {"fg": "green"},
    "warn": {"fg": typer.colors.YELLOW},
    "heading": {"bold": True},
}


def _say(text: str, tone: str = "") -> None:
    typer.secho(text, **TONES.get(tone, {}))


def _step(step: Callable[..., object], *args: Any, **kwargs: Any) -> object:
    """Run a pipeline step with this project's params and paths; its failure is exit 1."""
    from .pipeline import StageFailed

    params, paths = _setup()
    try:
        return step(params, paths, _say, *args, **kwargs)
    except StageFailed as error:
        _fail(str(error))


@app.command()
def data() -> None:
    """Materialise the dataset into data/raw/ and fingerprint it."""
    from . import pipeline

    _step(pipeline.data)


@app.command()
def profile(
    output: Annotated[Path | None, typer.Option(help="Suite file to write")] = None,
) -> None:
    """Profile the data into a starting expectation suite for a human to review."""
    from . import validation

    params, paths = _setup()
    target = validation.profile(params, paths, output or paths.suite)
    typer.echo(f"wrote {target}: review it, then commit it")


@app.command()
def validate(
    data_file: Annotated[
        Path | None, typer.Option("--data", help="CSV/Parquet to validate")
    ] = None,
) -> None:
    """Run the expectation suite on the data; exit 1 naming each failing column."""
    from . import pipeline

    _step(pipeline.validate, data_file)


@app.command()
def train(
    retrain: Annotated[
        bool, typer.Option("--retrain", help="A retraining: record why (REASON, MONITOR_REPORT)")
    ] = False,
    reason: Annotated[str, REASON_OPTION] = "manual",
    monitor_report: Annotated[Path | None, MONITOR_REPORT_OPTION] = None,
) -> None:
    """Train LightGBM (seeded), log it to MLflow and register a new model version."""
    from . import pipeline, retraining

    _, paths = _setup()
    why = retraining.why(paths, reason, monitor_report) if retrain else None
    _step(pipeline.train, why)


@app.command()
def evaluate(
    defer_to_challenge: Annotated[
        bool,
        typer.Option(
            "--defer-to-challenge",
            help="Report the no-regression gate without failing on it: `challenge` decides",
        ),
    ] = False,
) -> None:
    """Score the model against the gates; exit 1 naming any failed gate."""
    from . import pipeline

    _step(pipeline.evaluate, defer_to_challenge)


@app.command()
def package(
    release: Annotated[
        bool, typer.Option(help="Publish it to the release store (CD: `release`, after checks)")
    ] = True,
) -> None:
    """Build the bento (model + service + pinned deps), export it to dist/ and release it."""
    from . import pipeline

    _step(pipeline.package, release)


@app.command()
def release() -> None:
    """Publish the bento in dist/ (the last `package`) to the release store."""
    from . import package as stage

    params, paths = _setup()
    released = stage.publish(params, paths)
    typer.echo(
        f"released {released['tag']} (sha256 {released['sha256']}) under model version "
        f"{released['model_version']}"
    )


@app.command()
def predict(
    source: Annotated[Path, typer.Argument(metavar="INPUT", help="Batch to score (.csv/.parquet)")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Predictions (.csv/.parquet)")],
    bento: Annotated[str | None, BENTO_OPTION] = None,
) -> None:
    """Validate a batch with the suite, then score it with the packaged model; refuse bad ones."""
    from . import predict as stage

    params, paths = _setup()
    try:
        record = stage.predict_file(params, paths, source, output, bento)
    except stage.BatchRefused as refused:
        _fail(str(refused))
    typer.echo(
        f"{record['rows']} rows scored by {record['bento']} (model version "
        f"{record['model_version']}) -> {record['output']}"
    )


@app.command("infra-check")
def infra_check(
    bento: Annotated[str | None, BENTO_OPTION] = None,
) -> None:
    """Serve the bento from a fresh venv of only its own requirements; it must answer alike."""
    from . import pipeline

    _step(pipeline.infra_check, bento)


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 3000,
    bento: Annotated[str | None, BENTO_OPTION] = None,
) -> None:
    """Serve the bento on 127.0.0.1 in the foreground."""
    from . import package, serving

    _, paths = _setup()
    serving.serve_foreground(bento or package.latest_bento(paths), port)


@app.command()
def smoke(
    url: Annotated[
        str, typer.Option(help="Base URL of a running service")
    ] = "http://127.0.0.1:3000",
) -> None:
    """Send held-out rows to a running service; fail unless it answers like the in-process model."""
    from . import smoke as stage

    params, paths = _setup()
    result = stage.smoke(params, paths, url)
    typer.echo(result.model_dump_json(indent=2))
    if not result.passed:
        _fail(f"service at {url} disagrees with the in-process model")


@app.command()
def pipeline(
    port: Annotated[int, typer.Option(help="Port for the smoke-test server")] = 3000,
) -> None:
    """The whole journey: data to a bento verified in every environment (local target)."""
    from . import pipeline as stages

    _step(stages.run, port)


@app.command()
def loadtest(
    url: Annotated[str, typer.Option(help="Base URL of a running service")],
    env: Annotated[str, typer.Option(help="Environment whose gates apply")] = "test",
) -> None:
    """Load test a running service with locust; exit 1 naming each gate not met."""
    from . import pipeline

    _step(pipeline.loadtest, url, env)


def _deploy_step(action: str, *args: Any) -> None:
    """Run a deploy action of the engine; a refusal or failed check is one line and exit 1."""
    from . import pipeline
    from .deploy import engine

    _step(pipeline.deploy_step, getattr(engine, action), *args)


@app.command()
def deploy(
    env: Annotated[str, typer.Argument(help="Environment (environments/<env>.yaml)")],
    bento: Annotated[str | None, BENTO_OPTION] = None,
) -> None:
    """Deploy a bento to ENV, check it (health, smoke, load test), or keep the old one."""
    _deploy_step("deploy", env, bento)


@app.command()
def promote(env: Annotated[str, typer.Argument(help="Environment to promote to")]) -> None:
    """Deploy to ENV the bento verified in the environment ENV requires."""
    _deploy_step("promote", env)


@app.command()
def rollback(env: Annotated[str, typer.Argument(help="Environment to roll back")]) -> None:
    """Redeploy the bento ENV served before its current one (recorded as a new deploy)."""
    _deploy_step("rollback", env)


@app.command()
def status() -> None:
    """Every environment: bento, model version, commit, gates, when, by whom, healthy."""
    from .deploy import engine

    _, paths = _setup()
    typer.echo(engine.format_status(engine.status(paths)))


@app.command()
def down(
    env: Annotated[str | None, typer.Argument(help="Environment (default: all)")] = None,
    job_end: Annotated[
        bool,
        typer.Option(help="Only what cannot outlive a CI job; a lasting host keeps serving"),
    ] = False,
) -> None:
    """Stop deployments (one environment, or all): local servers and lasting hosts."""
    from .deploy import engine

    _, paths = _setup()
    stopped = engine.down(paths, env, lasting=not job_end)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


environments_app = typer.Typer(
    no_args_is_help=True, help="The deployment environments on GitHub and GitLab."
)
app.add_typer(environments_app, name="environments")


@environments_app.command("sync")
def environments_sync(
    platform: Annotated[str, typer.Option(help="github or gitlab")],
    dry_run: Annotated[bool, typer.Option(help="Print the requests; send nothing")] = False,
) -> None:
    """Apply each environments/*.yaml `approval` to the platform's protection rules."""
    from .platforms.api import SyncFailed
    from .platforms.sync import sync

    try:
        names = sync(Paths.discover(), platform, dry_run, typer.echo)
    except SyncFailed as error:
        _fail(f"environments sync: {error}")
    done = "would be synced (dry run)" if dry_run else "synced"
    typer.secho(f"{platform}: {', '.join(names)} {done}", fg="green")


@environments_app.command("verify")
def environments_verify(
    env: Annotated[str, typer.Argument(help="Environment a CI job is about to deploy to")],
    platform: Annotated[
        str | None, typer.Option(help="github or gitlab (default: the CI platform running this)")
    ] = None,
) -> None:
    """Exit 1 unless the platform protects ENV as its file asks (semi-auto and manual)."""
    from .deploy import environments
    from .platforms import protection

    try:
        typer.echo(protection.verify(environments.get(Paths.discover(), env), platform))
    except protection.Unprotected as error:
        _fail(str(error))


store_app = typer.Typer(
    no_args_is_help=True, help="The release store (MLflow): model versions, bentos, deploys."
)
app.add_typer(store_app, name="store")


@store_app.command("migrate")
def store_migrate(
    to: Annotated[str, typer.Option("--to", help="The team's MLflow tracking server URI")],
) -> None:
    """Copy this project's release store (model versions with their runs, logged models and
    bentos; deploy records; aliases) to the tracking server TO, which must not have the model."""
    from mlflow.exceptions import MlflowException

    from . import release_migration

    paths = Paths.discover()
    try:
        done = release_migration.migrate(paths, to, typer.echo)
    except MlflowException as error:
        raise RuntimeError(
            f"migrating to {to} failed: {str(error.message).splitlines()[0]} (anything already "
            "copied stays on the server: delete it there before trying again)"
        ) from None
    typer.echo(
        f"copied {paths.mlflow_uri} to {to}: {len(done['versions'])} model versions, "
        f"{len(done['deploy_records'])} deploy records, {len(done['aliases'])} aliases"
    )


# --- CI only: the commands CI jobs (make ci-* targets) run, and the CI files. ---
ci_app = typer.Typer(
    no_args_is_help=True,
    help="CI only: the CI files (rendered from environments/) and the steps CI jobs run.",
)
app.add_typer(ci_app, name="ci")


@ci_app.command("render")
def ci_render(
    platform: Annotated[
        list[str] | None,
        typer.Option(help="github and/or gitlab (default: the platforms the project has)"),
    ] = None,
) -> None:
    """Write .github/workflows/ and .gitlab-ci.yml from environments/*.yaml."""
    from . import cicd

    paths = Paths.discover()
    for path in cicd.write(paths.root, platform):
        typer.echo(f"wrote {path.relative_to(paths.root)}")


@ci_app.command("check")
def ci_check() -> None:
    """Exit 1 if a CI file differs from a fresh render of environments/*.yaml."""
    from . import cicd

    paths = Paths.discover()
    if stale := cicd.stale(paths.root):
        _fail(f"stale CI files: {', '.join(stale)}; run `make ci-files` and commit them")
    typer.echo("CI files match environments/*.yaml")


template_app = typer.Typer(
    no_args_is_help=True, help="The template the project was baked from (.cruft.json)."
)
app.add_typer(template_app, name="template")
CHECKOUT_OPTION = typer.Option(
    envvar="CHECKOUT", help="Template branch, tag or commit (default: its default branch)"
)


@template_app.command("check")
def template_check(
    checkout: Annotated[str | None, CHECKOUT_OPTION] = None,
    report: Annotated[
        bool, typer.Option(help="CI: report a lag or an unreachable template; never fail")
    ] = False,
) -> None:
    """Exit 1 if the template has commits the project lacks (`make template-update`)."""
    from . import template_update as template

    root = Paths.discover().root
    try:
        state = template.load_state(root)
        if report and template.is_local(state["template"]):
            typer.echo(
                f"not checked: the template is a path on the machine that baked the project "
                f"({state['template']}); record its git URL in .cruft.json for CI to check it"
            )
            return
        lag = template.behind(root, checkout)
    except template.TemplateError as error:
        if not report:
            _fail(str(error))
        typer.echo(f"not checked: {error}")
        return
    if lag is None:
        typer.echo(f"up to date with the template ({state['template']})")
        return
    message = (
        f"the template has moved on ({lag[0][:12]} recorded, {lag[1][:12]} now): "
        "run `make template-update`, review and commit"
    )
    if not report:
        _fail(message)
    # A warning annotation on GitHub; GitLab shows the job's log line.
    prefix = "::warning title=Template update::" if os.environ.get("GITHUB_ACTIONS") else ""
    typer.echo(prefix + message)


@template_app.command("update")
def template_update(checkout: Annotated[str | None, CHECKOUT_OPTION] = None) -> None:
    """Merge the template's later commits (cruft update), re-render the CI files, re-lock."""
    from . import template_update as template

    root = Paths.discover().root
    try:
        updated = template.update(root, checkout)
    except template.TemplateError as error:
        _fail(str(error))
    if updated is None:
        typer.echo("already at the template's latest commit: nothing to update")
        return
    typer.echo(
        f"updated from {updated.template}: {updated.before[:12]} -> {updated.after[:12]}"
        + ("; uv.lock re-resolved" if updated.relocked else "")
    )
    typer.echo("\n".join(f"  {line}" for line in updated.changed))
    typer.echo(
        "review it (git diff HEAD), run `make install lint test`, then commit: "
        f'git add -A && git commit -m "Update from the template ({updated.after[:12]})"'
    )


@ci_app.command("require-store-server")
def ci_require_store_server() -> None:
    """Exit 1 unless MLFLOW_TRACKING_URI names a tracking server (CD jobs check this first)."""
    from . import release_store

    uri = release_store.require_server(Paths.discover())
    typer.echo(f"release store: {uri}")


@ci_app.command("import-bento")
def ci_import_bento() -> None:
    """Import the bento archives in dist/ into the project's bento store (CI jobs get them
    as artifacts): serve and deploy the bento that was built, never a rebuilt one."""
    from . import package as stage

    _, paths = _setup()
    imported = stage.import_archives(paths)
    typer.echo(
        f"imported: {', '.join(imported)}" if imported else "every bento in dist/ is in the store"
    )


@ci_app.command("service-check")
def ci_service_check(
    env: Annotated[str, typer.Option(help="Environment whose load-test gates apply")] = "test",
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one)")
    ] = None,
) -> None:
    """Serve the latest bento here, load test it against ENV's gates, then stop it."""
    from . import pipeline

    _step(pipeline.service_check, env, port)


@ci_app.command("summary")
def ci_summary() -> None:
    """Print the reports found here as Markdown tables (CI appends it to the job summary)."""
    from . import summary as stage

    _, paths = _setup()
    typer.echo(stage.render(paths))


@ci_app.command("monitor-decision")
def ci_monitor_decision() -> None:
    """The latest `monitor` result in reports/monitoring/ as key=value lines (retrain=true|false,
    window, report), for CI: GitHub's $GITHUB_OUTPUT, the scheduled retrain job's gate."""
    from . import retraining

    _, paths = _setup()
    path = retraining.latest_monitor_result(paths)
    result = retraining.read_monitor_result(path)
    typer.echo(f"retrain={str(result['retrain']).lower()}")
    typer.echo(f"window={result['window']}")
    shown = path.relative_to(paths.root) if path.is_relative_to(paths.root) else path
    typer.echo(f"report={shown}")


# --- Monitoring: what the service logged, against what the model was trained on. ---
ENV_OPTION = typer.Option(
    "--env", help="Environment whose prediction log to read (default: the one `serve` writes)"
)


@app.command()
def monitor(
    model_version: Annotated[
        str | None,
        typer.Option(
            envvar="MODEL_VERSION", help="Model version (default: the one aliased production)"
        ),
    ] = None,
    rows: Annotated[
        int | None, typer.Option(help="Window size in rows (default: monitoring.window_rows)")
    ] = None,
    fail_on_retrain: Annotated[
        bool, typer.Option(help="Exit 3 when the decision is to retrain (for CI)")
    ] = False,
    env: Annotated[str | None, ENV_OPTION] = None,
) -> None:
    """Compare the latest window of served data with the training data; decide on retraining."""
    from . import monitor as stage
    from .monitor_report import table

    params, paths = _setup()
    result = stage.run(params, paths, model_version, rows, env)
    typer.echo(table(result))
    typer.echo(f"report: {result['html']}\nresult: {result['json']}")
    if fail_on_retrain and result["decision"]["retrain"]:
        raise typer.Exit(3)


@app.command()
def replay(
    url: Annotated[str, typer.Option(help="Base URL of a running service")],
    rows: Annotated[int, typer.Option(help="Rows to send (default: monitoring.window_rows)")] = 0,
    shift: Annotated[
        float, typer.Option(help="Move every numeric feature by this many training std")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Which held-out rows are drawn")] = 0,
    labels: Annotated[
        Path, typer.Option(help="Where to write the rows' labels for `make feedback`")
    ] = Path("reports/monitoring/replay-labels.csv"),
) -> None:
    """Send held-out rows (shifted if asked) to a running service, as traffic to monitor."""
    from . import replay as stage

    params, paths = _setup()
    sent = stage.replay(
        params, paths, url, rows or params.monitoring.window_rows, shift, seed, labels
    )
    typer.echo(
        f"{sent['rows']} rows in {sent['requests']} requests sent to {url} "
        f"(numeric features {shift:+g} std); labels for `make feedback`: {sent['labels']}"
    )


@app.command()
def feedback(
    labels: Annotated[
        Path, typer.Argument(envvar="LABELS", help="CSV/Parquet: request_id, [row,] target")
    ],
    env: Annotated[str | None, ENV_OPTION] = None,
) -> None:
    """Join late labels to the prediction log by request id; monitor then scores the model."""
    from . import served_data
    from .monitor import feedback_store, log_folder

    params, paths = _setup()
    target = params.data.target
    log = served_data.read_log(log_folder(params, paths, env))
    done = served_data.join_feedback(
        log, served_data.read_labels(labels, target), feedback_store(paths, env), target
    )
    typer.echo(
        f"{done['joined']} of {done['labels']} labels joined by request id "
        f"({done['unmatched']} not in the prediction log); {done['stored']} stored in {done['path']}"
    )


challenge_app = typer.Typer(
    no_args_is_help=True,
    help="Champion against challenger: the version just trained vs production.",
)
app.add_typer(challenge_app, name="challenge")


@challenge_app.command("run")
def challenge_run(labelled: Annotated[Path | None, LABELLED_OPTION] = None) -> None:
    """Score the new version and the production one on the same rows; the new one wins only
    by the margin. A loser exits 0: it is a result, recorded with its reason."""
    _challenge(labelled)


def _challenge(labelled: Path | None) -> None:
    from . import challenge as stage

    params, paths = _setup()
    result = stage.run(params, paths, labelled)
    typer.echo(stage.format_result(result))
    typer.echo(f"result: {paths.challenge_report}")


@app.command()
def retrain(
    reason: Annotated[str, REASON_OPTION] = "manual",
    monitor_report: Annotated[Path | None, MONITOR_REPORT_OPTION] = None,
    labelled: Annotated[Path | None, LABELLED_OPTION] = None,
) -> None:
    """`make retrain` up to the challenge, in one process (a command per step would import
    MLflow, LightGBM and pandas again each time): data, validate, train as a retraining,
    evaluate deferring to the challenge, then the challenge. A loser exits 0."""
    from . import pipeline, retraining

    _, paths = _setup()
    why = retraining.why(paths, reason, monitor_report)  # a bad REASON stops it before the data
    _step(pipeline.data)
    _step(pipeline.validate, None)
    _step(pipeline.train, why)
    _step(pipeline.evaluate, True)
    _challenge(labelled)


@challenge_app.command("verdict")
def challenge_verdict() -> None:
    """Print the last challenge as key=value lines (winner=true|false, versions, bento)."""
    from . import challenge as stage

    _, paths = _setup()
    for key, value in stage.verdict(paths).items():
        typer.echo(f"{key}={value}")


def main() -> None:
    """Console entry point: expected problems (missing inputs, bad config) end in one
    clear line and exit code 1 rather than a traceback; --traceback or TRACEBACK=1 shows
    the traceback instead."""
    import os

    from pydantic import ValidationError

    global _show_traceback
    _show_traceback = False
    try:
        app()
    except (FileNotFoundError, ValueError, ValidationError, RuntimeError) as error:
        if _show_traceback or os.environ.get(TRACEBACK_VARIABLE, "").strip() not in {"", "0"}:
            raise
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
