"""`{{ cookiecutter.project }}` command: one subcommand per stage, each behind a make target."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from .config import Paths, load_params, use_project_stores

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
# Make passes BENTO= through the environment, never pasted into a command line.
BENTO_OPTION = typer.Option(envvar="BENTO", help="Bento tag (default: the latest built)")


def _setup() -> tuple:
    """Find the project, load params.yaml, point BentoML and MLflow at project stores."""
    paths = Paths.discover()
    use_project_stores(paths)
    return load_params(paths.params), paths


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def data() -> None:
    """Materialise the dataset into data/raw/ and fingerprint it."""
    from . import data as stage

    params, paths = _setup()
    record = stage.materialise(params, paths)
    typer.echo(f"{record['rows']} rows, {len(record['columns'])} columns -> {record['path']}")
    if record["unlabelled_dropped"]:
        typer.echo(
            f"dropped {record['unlabelled_dropped']} rows without a label in "
            f"{params.data.target!r} (data.unlabelled: drop)"
        )
    elif record["unlabelled"]:
        typer.secho(
            f"{record['unlabelled']} rows have no label in {params.data.target!r}: "
            "`make validate` refuses them (data.unlabelled: refuse)",
            fg=typer.colors.YELLOW,
        )
    typer.echo(f"fingerprint sha256:{record['sha256']}")


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
    from . import validation

    params, paths = _setup()
    outcome = validation.validate(params, paths, data_file)
    typer.echo(validation.format_table(outcome))
    if not outcome["success"]:
        _fail(validation.format_failures(outcome))


@app.command()
def train(
    retrain: Annotated[
        bool, typer.Option("--retrain", help="A retraining: record why (REASON, MONITOR_REPORT)")
    ] = False,
    reason: Annotated[
        str, typer.Option(envvar="REASON", help="With --retrain: drift, schedule or manual")
    ] = "manual",
    monitor_report: Annotated[
        Path | None,
        typer.Option(
            envvar="MONITOR_REPORT",
            help="With --retrain: the `monitor` result that decided it (default: the latest)",
        ),
    ] = None,
) -> None:
    """Train LightGBM (seeded), log it to MLflow and register a new model version."""
    from . import retraining
    from . import train as stage

    params, paths = _setup()
    why = retraining.why(paths, reason, monitor_report) if retrain else None
    card = stage.train(params, paths, why)
    if why:
        typer.echo(", ".join(f"{key}={value}" for key, value in why.items()))
    typer.echo(
        f"model version {card['model_version']} (run {card['run_id']}) -> {paths.model_file}"
    )


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
    from . import evaluate as stage

    params, paths = _setup()
    report = stage.evaluate(params, paths, defer_to_challenge)
    typer.echo(stage.format_report(report))
    if not report["passed"]:
        _fail("evaluation gates failed: " + "; ".join(report["failures"]))


@app.command()
def package(
    release: Annotated[
        bool, typer.Option(help="Publish it to the release store (CD: `release`, after checks)")
    ] = True,
) -> None:
    """Build the bento (model + service + pinned deps), export it to dist/ and release it."""
    from . import package as stage

    params, paths = _setup()
    result = stage.build(params, paths, release=release)
    typer.echo(f"bento {result['tag']} -> {result['archive']}")
    if not release:
        typer.echo("not released: `release` publishes it to the release store")


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
    from .deploy import infra

    params, paths = _setup()
    result = infra.check(params, paths, bento)
    typer.echo(f"fresh venv of the bento's requirements: {' '.join(result['requirements'])}")
    if not result["passed"]:
        _fail(result["error"] + (f" (server log: {result['log']})" if "log" in result else ""))
    typer.secho(
        f"bento {result['bento']} served from its own requirements answered "
        f"{result['smoke']['rows']} rows like the registered model ({result['seconds']:.0f}s)",
        fg="green",
    )


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 3000,
    bento: Annotated[str | None, BENTO_OPTION] = None,
) -> None:
    """Serve the bento on 127.0.0.1 in the foreground."""
    from . import package as stage

    params, paths = _setup()
    stage.serve_foreground(paths, bento, port)


@app.command()
def smoke(
    url: Annotated[
        str, typer.Option(help="Base URL of a running service")
    ] = "http://127.0.0.1:3000",
) -> None:
    """Send held-out rows to a running service; fail unless it answers like the in-process model."""
    from . import package as stage

    params, paths = _setup()
    result = stage.smoke(params, paths, url)
    typer.echo(json.dumps(result, indent=2))
    if not result["matches"]:
        _fail(f"service at {url} disagrees with the in-process model")


@app.command()
def pipeline(
    port: Annotated[int, typer.Option(help="Port for the smoke-test server")] = 3000,
) -> None:
    """The whole journey: data to a bento verified in every environment (local target)."""
    from . import package as package_stage
    from .deploy import engine
    from .deploy.environments import load_all

    timings: list[tuple[str, float]] = []
    for name, command in [
        ("data", data),
        ("validate", lambda: validate(None)),
        ("train", train),
        ("evaluate", evaluate),
        ("package", package),
        ("infra check", lambda: infra_check(None)),
    ]:
        typer.secho(f"== {name}", bold=True)
        started = time.perf_counter()
        command()
        timings.append((name, time.perf_counter() - started))
    typer.secho("== serve + smoke", bold=True)
    params, paths = _setup()
    started = time.perf_counter()
    result = package_stage.serve_and_smoke(params, paths, port)
    timings.append(("serve + smoke", time.perf_counter() - started))
    if not result["matches"]:
        _fail("served bento disagrees with the in-process model")
    # Build once, promote the same bento: deploy to the first environment, promote onwards.
    for environment in load_all(paths).values():
        step = "deploy" if environment.requires is None else "promote"
        typer.secho(f"== {step} {environment.name}", bold=True)
        started = time.perf_counter()
        if step == "deploy":
            _deploy_step(engine.deploy, environment.name, None)
        else:
            _deploy_step(engine.promote, environment.name)
        timings.append((f"{step} {environment.name}", time.perf_counter() - started))
    typer.echo(f"\n{'stage':<20}{'seconds':>9}")
    for name, seconds in timings:
        typer.echo(f"{name:<20}{seconds:>9.1f}")
    typer.echo(f"{'total':<20}{sum(s for _, s in timings):>9.1f}\n")
    typer.echo(engine.format_status(engine.status(paths)))
    typer.echo("\nThe environments keep serving until `make down`.")
    typer.secho(
        f"bento {result['bento']} answered {result['rows']} rows like the in-process model",
        fg="green",
    )
    last = list(load_all(paths).values())[-1]
    typer.secho(f"\n== monitor: a shifted window replayed to {last.name}", bold=True)
    _demo_drift(params, paths, last.name, last.url)


# How far the pipeline's closing demo moves every numeric feature, in training standard
# deviations: a shift the default drift settings detect in nearly every window.
DEMO_SHIFT = 0.5


def _demo_drift(params, paths, environment: str, url: str) -> None:
    """Replay a shifted window, join its labels, run `monitor` and show its report."""
    from . import monitor as monitor_stage
    from . import replay as replay_stage
    from . import served_data
    from .monitor_report import table

    labels = paths.monitoring_reports / "demo-labels.csv"
    sent = replay_stage.replay(
        params, paths, url, params.monitoring.window_rows, DEMO_SHIFT, params.seed, labels
    )
    folder = monitor_stage.log_folder(params, paths, environment)
    served_data.join_feedback(
        replay_stage.wait_logged(folder, sent["last_request"]),
        served_data.read_labels(labels, params.data.target),
        monitor_stage.feedback_store(paths, environment), params.data.target,
    )  # fmt: skip
    result = monitor_stage.run(params, paths, environment=environment)
    typer.echo(f"{sent['rows']} rows, numeric features +{DEMO_SHIFT:g} std, sent to {url}")
    typer.echo(table(result))
    typer.secho(f"drift report: {result['html']}", fg="green")


@app.command()
def loadtest(
    url: Annotated[str, typer.Option(help="Base URL of a running service")],
    env: Annotated[str, typer.Option(help="Environment whose gates apply")] = "test",
) -> None:
    """Load test a running service with locust; exit 1 naming each gate not met."""
    from . import loadtest as stage
    from .deploy.environments import get

    params, paths = _setup()
    result = stage.run(params, paths, url, get(paths, env))
    typer.echo(stage.format_result(result))
    typer.echo(f"reports: {result['reports']}")
    if not result["passed"]:
        _fail("load test gates not met: " + "; ".join(result["failures"]))


def _deploy_step(step, *args) -> None:
    """Run a deploy command; a refusal or failed check is one clear line and exit 1."""
    from .deploy.engine import DeployFailed, Refused, Unfinished, abort_on_signals

    params, paths = _setup()
    abort_on_signals()
    try:
        record = step(params, paths, *args)
    except (Refused, DeployFailed, Unfinished) as error:
        _fail(str(error))
    typer.secho(
        f"{record['action']}: {record['bento']} (model version {record['model_version']}) "
        f"serves {record['environment']} at {record['url']}",
        fg="green",
    )


@app.command()
def deploy(
    env: Annotated[str, typer.Argument(help="Environment (environments/<env>.yaml)")],
    bento: Annotated[str | None, BENTO_OPTION] = None,
) -> None:
    """Deploy a bento to ENV, check it (health, smoke, load test), or keep the old one."""
    from .deploy import engine

    _deploy_step(engine.deploy, env, bento)


@app.command()
def promote(env: Annotated[str, typer.Argument(help="Environment to promote to")]) -> None:
    """Deploy to ENV the bento verified in the environment ENV requires."""
    from .deploy import engine

    _deploy_step(engine.promote, env)


@app.command()
def rollback(env: Annotated[str, typer.Argument(help="Environment to roll back")]) -> None:
    """Redeploy the bento ENV served before its current one (recorded as a new deploy)."""
    from .deploy import engine

    _deploy_step(engine.rollback, env)


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
    from .deploy import platforms

    try:
        names = platforms.sync(Paths.discover(), platform, dry_run, typer.echo)
    except platforms.SyncFailed as error:
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
    from .deploy import environments, protection

    try:
        typer.echo(protection.verify(environments.get(Paths.discover(), env), platform))
    except protection.Unprotected as error:
        _fail(str(error))


store_app = typer.Typer(
    no_args_is_help=True, help="The release store (MLflow): model versions, bentos, deploys."
)
app.add_typer(store_app, name="store")


@store_app.command("require-server")
def store_require_server() -> None:
    """Exit 1 unless MLFLOW_TRACKING_URI names a tracking server (CD jobs check this first)."""
    from . import release_store

    uri = release_store.require_server(Paths.discover())
    typer.echo(f"release store: {uri}")


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


@app.command("import-bento")
def import_bento() -> None:
    """Import the bento archives in dist/ into the project's bento store (CI jobs get them
    as artifacts): serve and deploy the bento that was built, never a rebuilt one."""
    from . import package as stage

    _, paths = _setup()
    imported = stage.import_archives(paths)
    typer.echo(
        f"imported: {', '.join(imported)}" if imported else "every bento in dist/ is in the store"
    )


@app.command("service-check")
def service_check(
    env: Annotated[str, typer.Option(help="Environment whose load-test gates apply")] = "test",
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one)")
    ] = None,
) -> None:
    """Serve the latest bento here, load test it against ENV's gates, then stop it."""
    from . import package as stage

    _, paths = _setup()
    with stage.running_server(paths, stage.latest_bento(paths), port) as url:
        loadtest(url=url, env=env)


@app.command()
def summary() -> None:
    """Print the reports found here as Markdown tables (CI appends it to the job summary)."""
    from . import summary as stage

    _, paths = _setup()
    typer.echo(stage.render(paths))


ci_app = typer.Typer(no_args_is_help=True, help="The CI/CD files, rendered from environments/.")
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
        _fail(f"stale CI files: {', '.join(stale)}; run `make ci` and commit them")
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


@app.command("monitor-decision")
def monitor_decision() -> None:
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
def challenge_run(
    labelled: Annotated[
        Path | None,
        typer.Option(
            envvar="LABELLED",
            help="Labelled served rows (default: reports/monitoring/labelled.parquet, if any)",
        ),
    ] = None,
) -> None:
    """Score the new version and the production one on the same rows; the new one wins only
    by the margin. A loser exits 0: it is a result, recorded with its reason."""
    from . import challenge as stage

    params, paths = _setup()
    result = stage.run(params, paths, labelled)
    typer.echo(stage.format_result(result))
    typer.echo(f"result: {paths.challenge_report}")


@challenge_app.command("verdict")
def challenge_verdict() -> None:
    """Print the last challenge as key=value lines (winner=true|false, versions, bento)."""
    from . import challenge as stage

    _, paths = _setup()
    for key, value in stage.verdict(paths).items():
        typer.echo(f"{key}={value}")


def main() -> None:
    """Console entry point: expected problems (missing inputs, bad config) end in one
    clear line and exit code 1 rather than a traceback; TRACEBACK=1 shows it instead."""
    import os

    from pydantic import ValidationError

    try:
        app()
    except (FileNotFoundError, ValueError, ValidationError, RuntimeError) as error:
        if os.environ.get("TRACEBACK", "").strip() not in {"", "0"}:
            raise
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
