"""Deploy records in the release store: one MLflow run per deploy attempt.

Runs of the `<project>-deployments` experiment, one per attempt, never rewritten: a
rollback is a new run, and every past deploy stays visible in the MLflow UI. A run starts
(RUNNING) before the candidate is checked, so a deploy killed half-way is still visible,
and ends FINISHED (every check passed: the bento serves) or FAILED. Tags hold the
record's fields, so the UI's run table, filtered on `tags.environment`, is the history;
the load-test figures are also metrics. The model version that serves an environment
carries the environment's alias and `deploy.<env>.*` tags (see `tag_registry`).

The run is also the deploy's journal. Its `phase` is `checking` until the candidate has
passed its checks, then `switching` (written before the old bento stops), and `finished`
once the outcome is recorded. A RUNNING run whose process is gone (`abandoned`) was cut
short; the next deploy, status or down settles it (engine.reconcile) as `recovered`.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from datetime import UTC, datetime
from typing import Any

from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException

from .. import registry
from ..config import PROJECT, Paths

EXPERIMENT = f"{PROJECT}-deployments"
ACTOR_VARIABLES = ("GITLAB_USER_LOGIN", "GITHUB_ACTOR", "USER")
# Record fields kept as run tags (the checks as one JSON tag); the rest are derived.
FIELDS = (
    "time", "environment", "action", "bento", "bento_sha256", "model_version", "git_commit",
    "actor", "target", "url", "previous_bento", "error", "process", "phase",
)  # fmt: skip
# Set by `make ci-deploy` to the environment its job deploys. CI runs one deploy job per
# environment at a time (GitHub's concurrency group, GitLab's resource_group), so a record
# of that environment still RUNNING was cut short in a job that is over (cancelled, or its
# runner lost), on whatever machine it ran.
SOLE_DEPLOYER_VARIABLE = "DEPLOY_SOLE_JOB_OF"
# MLflow caps a tag value at 8000 characters.
MAX_TAG = 8000
LOADTEST_METRICS = ("rps", "p50_ms", "p95_ms", "p99_ms", "errors", "requests")


def actor() -> str:
    """Who deploys: the CI user when run by CI, else the local user."""
    for variable in ACTOR_VARIABLES:
        if value := os.environ.get(variable):
            return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def process() -> str:
    """`<host>:<pid>` of this deploy, to tell a deploy in progress from one that died."""
    return f"{socket.gethostname()}:{os.getpid()}"


def abandoned(record: dict[str, Any]) -> bool:
    """Whether `record` is RUNNING but its deploy is over: started on this host by a process
    that is gone (or by this one: the caller holds the deploy lock, so it is not running),
    or anywhere, when this is the CI job that alone deploys its environment now."""
    host, _, pid = (record.get("process") or "").rpartition(":")
    if record["status"] != "RUNNING":
        return False
    if record.get("environment") == os.environ.get(SOLE_DEPLOYER_VARIABLE):
        return True
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _tag(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:MAX_TAG]


def start(paths: Paths, record: dict[str, Any]) -> dict[str, Any]:
    """Open the attempt's run (RUNNING) before anything is deployed; return the record."""
    client = registry.client(paths)
    experiment = registry.setup_experiment(paths, EXPERIMENT)
    tags = {key: _tag(record[key]) for key in FIELDS if record.get(key) is not None}
    tags["mlflow.runName"] = f"{record['action']} {record['environment']} {record['bento']}"
    run = client.create_run(experiment, tags=tags)
    return {**record, "run_id": run.info.run_id}


def journal(paths: Paths, record: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    """Note in the run that the candidate passed `checks` and the switch begins.

    Written before the old bento stops: if this write fails the deploy stops while the old
    bento still serves; if the deploy dies after it, the next command knows its bento was
    checked and may have taken over.
    """
    client = registry.client(paths)
    client.set_tag(record["run_id"], "checks", _tag(checks))
    client.set_tag(record["run_id"], "phase", "switching")
    return {**record, "checks": checks, "phase": "switching"}


def finish(paths: Paths, record: dict[str, Any]) -> dict[str, Any]:
    """Close the attempt's run with its checks and outcome.

    The status (FINISHED or FAILED) is written last: it is the write that commits the
    outcome, and until it lands the run stays RUNNING, as the journal of a deploy cut short.
    """
    client = registry.client(paths)
    run_id = record["run_id"]
    phase = "recovered" if record.get("phase") == "recovered" else "finished"
    client.set_tag(run_id, "phase", phase)
    client.set_tag(run_id, "checks", _tag(record["checks"]))
    client.set_tag(run_id, "success", "true" if record["success"] else "false")
    if record.get("error"):
        client.set_tag(run_id, "error", _tag(record["error"]))
    for name, value in (record["checks"].get("loadtest") or {}).items():
        if name in LOADTEST_METRICS and isinstance(value, int | float):
            client.log_metric(run_id, f"loadtest_{name}", float(value))
    status = RunStatus.to_string(RunStatus.FINISHED if record["success"] else RunStatus.FAILED)
    client.set_terminated(run_id, status)
    return {**record, "status": status, "phase": phase}


def _record(run: Run) -> dict[str, Any]:
    tags = run.data.tags
    record: dict[str, Any] = {key: tags.get(key) for key in FIELDS}
    try:
        record["checks"] = json.loads(tags.get("checks", "{}"))
    except json.JSONDecodeError:  # cut at MAX_TAG: keep what is there, readable
        record["checks"] = {"truncated": tags["checks"]}
    record["success"] = run.info.status == "FINISHED" and tags.get("success") == "true"
    # RUNNING: in progress, or interrupted (killed) before it could record its outcome.
    record["status"] = run.info.status
    record["run_id"] = run.info.run_id
    return record


def read(paths: Paths, environment: str | None = None) -> list[dict[str, Any]]:
    """Every deploy attempt (to `environment`, if given), oldest first."""
    client = registry.client(paths)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    where = f"tags.environment = '{environment}'" if environment else ""
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], where, max_results=1000, page_token=token
        )
        runs += page
        token = page.token
        if not token:
            break
    records = [_record(run) for run in runs]
    return sorted(records, key=lambda record: record["time"] or "")


def successes(paths: Paths, environment: str) -> list[dict[str, Any]]:
    """The deploys to `environment` whose every check passed, oldest first."""
    return [record for record in read(paths, environment) if record["success"]]


def verified(paths: Paths, environment: str, bento: str) -> bool:
    """Whether `bento` was deployed to `environment` and passed its checks there."""
    return any(record["bento"] == bento for record in successes(paths, environment))


def current(paths: Paths, environment: str) -> dict[str, Any] | None:
    """The last successful deploy to `environment`: what it serves."""
    done = successes(paths, environment)
    return done[-1] if done else None


def previous(paths: Paths, environment: str) -> dict[str, Any] | None:
    """The last successful deploy of a bento other than the one serving now."""
    done = successes(paths, environment)
    if not done:
        return None
    serving = done[-1]["bento"]
    return next((r for r in reversed(done) if r["bento"] != serving), None)


def retag(paths: Paths, record: dict[str, Any]) -> bool:
    """Tag the model version of `record`, an environment's current deploy, unless it already
    carries it: aliases follow the history, even after a write to them failed."""
    if record.get("model_version") in (None, "None", ""):
        return False
    environment = record["environment"]
    try:
        tagged = registry.client(paths).get_model_version_by_alias(PROJECT, environment)
    except MlflowException:  # no such alias yet
        tagged = None
    if tagged is not None and (
        str(tagged.version) == str(record["model_version"])
        and tagged.tags.get(f"deploy.{environment}.deploy_run") == record["run_id"]
    ):
        return False
    tag_registry(paths, record)
    return True


def tag_registry(paths: Paths, record: dict[str, Any]) -> None:
    """Alias the model version after the environment and tag it with the deploy record."""
    version = record.get("model_version")
    if version in (None, "None", ""):
        return
    client = registry.client(paths)
    environment = record["environment"]
    client.set_registered_model_alias(PROJECT, environment, str(version))
    tags = {
        "bento": record["bento"],
        "git_commit": record["git_commit"],
        "gates": json.dumps(record["checks"], sort_keys=True),
        "actor": record["actor"],
        "time": record["time"],
        "action": record["action"],
        "deploy_run": record["run_id"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(
            PROJECT, str(version), f"deploy.{environment}.{key}", _tag(value)
        )
