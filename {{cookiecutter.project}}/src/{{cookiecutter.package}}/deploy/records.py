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
from pydantic import BaseModel, field_validator

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


class DeployRecord(BaseModel):
    """One deploy attempt: a run's tags in the release store (FIELDS), and what
    reports/deploys/<env>.json shows of this job's deploy.

    Not frozen: it is the attempt's journal, filled in as the deploy proceeds.
    """

    time: str | None = None
    environment: str
    action: str  # deploy, promote or rollback
    bento: str  # a bento tag, or kubernetes.UNDONE for a `kubectl rollout undo`
    bento_sha256: str | None = None
    model_version: str | None = None
    git_commit: str | None = None
    actor: str | None = None
    target: str | None = None  # local, host or kubernetes
    url: str | None = None
    previous_bento: str | None = None
    error: str | None = None
    process: str | None = None  # <host>:<pid> of the deploy
    phase: str | None = None  # checking, switching, finished or recovered
    # What each check measured (health, smoke, loadtest, after_switch, kubernetes): a JSON
    # document in one tag, cut at MAX_TAG ({"truncated": ...} then).
    checks: dict[str, Any] = {}
    success: bool = False
    status: str | None = None  # the run's: RUNNING, FINISHED or FAILED; None before `start`
    run_id: str | None = None

    @field_validator("model_version", mode="before")
    @classmethod
    def _version(cls, value: object) -> object:
        # MLflow numbers versions (as int or str); bentos label a model without a version
        # "None", and records before this model stored that string as the tag.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None if value in ("None", "") else value

    def labels(self) -> dict[str, str | None]:
        """The bento's labels as this record keeps them (what package.bento_labels gives)."""
        return {
            "bento": self.bento,
            "model_version": self.model_version,
            "git_commit": self.git_commit,
        }


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


def abandoned(record: DeployRecord) -> bool:
    """Whether `record` is RUNNING but its deploy is over: started on this host by a process
    that is gone (or by this one: the caller holds the deploy lock, so it is not running),
    or anywhere, when this is the CI job that alone deploys its environment now."""
    host, _, pid = (record.process or "").rpartition(":")
    if record.status != "RUNNING":
        return False
    if record.environment == os.environ.get(SOLE_DEPLOYER_VARIABLE):
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


def start(paths: Paths, record: DeployRecord) -> DeployRecord:
    """Open the attempt's run (RUNNING) before anything is deployed; return the record."""
    client = registry.client(paths)
    experiment = registry.setup_experiment(paths, EXPERIMENT)
    fields = record.model_dump(include=set(FIELDS), exclude_none=True)
    tags = {key: _tag(value) for key, value in fields.items()}
    tags["mlflow.runName"] = f"{record.action} {record.environment} {record.bento}"
    run = client.create_run(experiment, tags=tags)
    return record.model_copy(update={"run_id": run.info.run_id, "status": "RUNNING"})


def _run_id(record: DeployRecord) -> str:
    if record.run_id is None:
        raise ValueError(f"the {record.action} of {record.bento} has no run: call start first")
    return record.run_id


def journal(paths: Paths, record: DeployRecord, checks: dict[str, Any]) -> DeployRecord:
    """Note in the run that the candidate passed `checks` and the switch begins.

    Written before the old bento stops: if this write fails the deploy stops while the old
    bento still serves; if the deploy dies after it, the next command knows its bento was
    checked and may have taken over.
    """
    client = registry.client(paths)
    client.set_tag(_run_id(record), "checks", _tag(checks))
    client.set_tag(_run_id(record), "phase", "switching")
    return record.model_copy(update={"checks": checks, "phase": "switching"})


def finish(paths: Paths, record: DeployRecord) -> DeployRecord:
    """Close the attempt's run with its checks and outcome.

    The status (FINISHED or FAILED) is written last: it is the write that commits the
    outcome, and until it lands the run stays RUNNING, as the journal of a deploy cut short.
    """
    client = registry.client(paths)
    run_id = _run_id(record)
    phase = "recovered" if record.phase == "recovered" else "finished"
    client.set_tag(run_id, "phase", phase)
    client.set_tag(run_id, "checks", _tag(record.checks))
    client.set_tag(run_id, "success", "true" if record.success else "false")
    if record.error:
        client.set_tag(run_id, "error", _tag(record.error))
    for name, value in (record.checks.get("loadtest") or {}).items():
        if name in LOADTEST_METRICS and isinstance(value, int | float):
            client.log_metric(run_id, f"loadtest_{name}", float(value))
    status = RunStatus.to_string(RunStatus.FINISHED if record.success else RunStatus.FAILED)
    client.set_terminated(run_id, status)
    return record.model_copy(update={"status": status, "phase": phase})


def from_run(run: Run) -> DeployRecord:
    """The record a run's tags keep (the same tags since the first release store)."""
    tags = run.data.tags
    try:
        checks = json.loads(tags.get("checks", "{}"))
    except json.JSONDecodeError:  # cut at MAX_TAG: keep what is there, readable
        checks = {"truncated": tags["checks"]}
    return DeployRecord.model_validate(
        {
            **{key: tags[key] for key in FIELDS if key in tags},
            "checks": checks,
            "success": run.info.status == "FINISHED" and tags.get("success") == "true",
            # RUNNING: in progress, or interrupted (killed) before it recorded its outcome.
            "status": run.info.status,
            "run_id": run.info.run_id,
        }
    )


def read(paths: Paths, environment: str | None = None) -> list[DeployRecord]:
    """Every deploy attempt (to `environment`, if given), oldest first."""
    client = registry.client(paths)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    where = f"tags.environment = '{environment}'" if environment else ""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], where, max_results=1000, page_token=token
        )
        runs += page
        token = page.token
        if not token:
            break
    records = [from_run(run) for run in runs]
    return sorted(records, key=lambda record: record.time or "")


def successes(paths: Paths, environment: str) -> list[DeployRecord]:
    """The deploys to `environment` whose every check passed, oldest first."""
    return [record for record in read(paths, environment) if record.success]


def verified(paths: Paths, environment: str, bento: str) -> bool:
    """Whether `bento` was deployed to `environment` and passed its checks there."""
    return any(record.bento == bento for record in successes(paths, environment))


def current(paths: Paths, environment: str) -> DeployRecord | None:
    """The last successful deploy to `environment`: what it serves."""
    done = successes(paths, environment)
    return done[-1] if done else None


def previous(paths: Paths, environment: str) -> DeployRecord | None:
    """The last successful deploy of a bento other than the one serving now."""
    done = successes(paths, environment)
    if not done:
        return None
    serving = done[-1].bento
    return next((r for r in reversed(done) if r.bento != serving), None)


def retag(paths: Paths, record: DeployRecord) -> bool:
    """Tag the model version of `record`, an environment's current deploy, unless it already
    carries it: aliases follow the history, even after a write to them failed."""
    if record.model_version is None:
        return False
    environment = record.environment
    try:
        tagged = registry.client(paths).get_model_version_by_alias(PROJECT, environment)
    except MlflowException:  # no such alias yet
        tagged = None
    if tagged is not None and (
        str(tagged.version) == record.model_version
        and tagged.tags.get(f"deploy.{environment}.deploy_run") == record.run_id
    ):
        return False
    tag_registry(paths, record)
    return True


def tag_registry(paths: Paths, record: DeployRecord) -> None:
    """Alias the model version after the environment and tag it with the deploy record."""
    version = record.model_version
    if version is None:
        return
    client = registry.client(paths)
    environment = record.environment
    client.set_registered_model_alias(PROJECT, environment, version)
    tags = {
        "bento": record.bento,
        "git_commit": record.git_commit,
        "gates": json.dumps(record.checks, sort_keys=True),
        "actor": record.actor,
        "time": record.time,
        "action": record.action,
        "deploy_run": record.run_id,
    }
    for key, value in tags.items():
        client.set_model_version_tag(PROJECT, version, f"deploy.{environment}.{key}", _tag(value))
