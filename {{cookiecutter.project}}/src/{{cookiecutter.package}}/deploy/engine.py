"""Deploy, promote, roll back, report and stop, per environments/*.yaml (local target).

Build once, promote the same bento: a bento reaches an environment only after it was
deployed to, and passed the checks of, the environment named in its `requires`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

from pydantic import BaseModel, ConfigDict

from .. import release_store, serving, smoke
from ..config import Params, Paths
from ..package import bento_labels, latest_bento
from . import checks, host, kubernetes, local, records, recovery
from .environments import Environment, get, load_all
from .records import DeployRecord


class EnvironmentStatus(BaseModel):
    """What `make status` shows of one environment."""

    model_config = ConfigDict(frozen=True)

    environment: str
    url: str | None
    running: str | None  # the bento answering there now
    healthy: bool
    record: DeployRecord | None  # its last successful deploy: what it should serve
    last_failure: DeployRecord | None  # its last attempt, when that did not succeed


class Refused(RuntimeError):
    """The deploy was not attempted: the message names the missing step."""


class DeployFailed(RuntimeError):
    """A check failed; the environment still serves what it served before."""


class Unfinished(RuntimeError):
    """The bento serves and its deploy is recorded, but a later write (aliases, report)
    failed; the next deploy, status or down redoes the aliases."""


class Aborted(RuntimeError):
    """The deploy was told to stop (SIGTERM, Ctrl-C): it ends like a failed check."""


def abort_on_signals() -> None:
    """Turn SIGTERM and SIGINT into Aborted, so an interrupted deploy stops its candidate,
    puts back what served, and records its attempt as failed."""

    def abort(signum: int, _frame: FrameType | None) -> None:
        raise Aborted(f"aborted by {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, abort)


@contextlib.contextmanager
def _locked(paths: Paths, wait: bool = True) -> Iterator[bool]:
    """One deploy at a time per project: two would race for ports and state files.

    Yields whether the lock is held: with `wait=False`, False when a deploy holds it.
    """
    paths.state.mkdir(parents=True, exist_ok=True)
    with open(paths.state / "deploy.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


# Free space a deploy needs where it writes (bento store, state, logs, a host's venv):
# checked first, so a full disk refuses the deploy instead of breaking it halfway.
MIN_FREE_MB_VARIABLE = "DEPLOY_MIN_FREE_MB"
MIN_FREE_MB = 1024


def _require_space(paths: Paths, environment: Environment) -> None:
    needed = int(os.environ.get(MIN_FREE_MB_VARIABLE) or MIN_FREE_MB)
    folders = [paths.state, paths.bentoml_home]
    if environment.deploy.target == "host":
        folders.append(host.layout(environment).root)
    for folder in folders:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        free = shutil.disk_usage(existing).free // 2**20
        if free < needed:
            raise Refused(
                f"only {free} MB free under {folder}: a deploy needs {needed} MB "
                f"(${MIN_FREE_MB_VARIABLE}); free some space, nothing was changed"
            )


def _require_verified(
    paths: Paths, environments: dict[str, Any], environment: Environment, bento: str
) -> None:
    required = environment.requires
    if required is None or records.verified(paths, required, bento):
        return
    raise Refused(
        f"bento {bento} has not been verified in {required}: "
        f"run {_step(environments[required])} first"
    )


def _step(environment: Environment) -> str:
    """The command that verifies a bento in `environment`."""
    verb = "deploy" if environment.requires is None else "promote"
    return f"make {verb} ENV={environment.name}"


def _open_record(
    paths: Paths,
    environment: Environment,
    before: DeployRecord | None,
    action: str,
    bento: str,
    phase: str,
    **facts: str | None,
) -> DeployRecord:
    """Start the attempt's record in the release store: who, where, what it replaces."""
    return records.start(
        paths,
        DeployRecord(
            time=records.now(),
            environment=environment.name,
            action=action,
            bento=bento,
            actor=records.actor(),
            target=environment.deploy.target,
            url=environment.url,
            previous_bento=before.bento if before else None,
            process=records.process(),
            phase=phase,
            **facts,
        ),
    )


def deploy(
    params: Params, paths: Paths, name: str, bento: str | None = None, action: str = "deploy"
) -> DeployRecord | kubernetes.DryRun:
    """Deploy `bento` (default: the one `make package` built last) to environment `name`.

    The bento comes from the release store (downloaded and its digest checked when this
    machine's bento store lacks it). Everything that decides whether it may deploy (the
    `requires` record, the gates, what serves now) is read under the deploy lock.
    """
    from ..registry import git_commit

    environments = load_all(paths)
    environment = get(paths, name)
    bento = release_store.check_tag(bento or latest_bento(paths))
    with _locked(paths):
        _require_space(paths, environment)
        recovery.reconcile(paths)
        _require_verified(paths, environments, environment, bento)
        digest = release_store.digest(paths, bento)
        release_store.fetch(paths, bento)
        labels = bento_labels(paths, bento)
        if failures := checks.metric_gate_failures(environment, checks.bento_metrics(bento)):
            gates = f"the metric gates of environments/{name}.yaml"
            raise Refused(f"bento {bento} does not meet {gates}: " + "; ".join(failures))
        if environment.deploy.target == "kubernetes" and kubernetes.dry_run():
            return kubernetes.plan(paths, environment, labels)
        model = smoke.reference_model(paths, labels["model_version"])
        rows = release_store.smoke_rows(paths, bento)
        before = records.current(paths, name)
        record = _open_record(
            paths,
            environment,
            before,
            action,
            bento,
            "checking",
            bento_sha256=digest,
            model_version=labels.get("model_version"),
            git_commit=labels.get("git_commit") or git_commit(paths),
        )

        def verify(url: str, full: bool) -> dict[str, Any]:
            nonlocal record
            found = checks.verify(
                params, paths, environment, url, bento, model, rows, load_test=full
            )
            if full:  # the candidate passed: journal it before anything is switched
                record = records.journal(paths, record, found)
            return found

        # What to put back should recording the switch fail (a cluster undoes its rollout).
        served_before = (
            (before.bento if before else None)
            if environment.deploy.target == "kubernetes"
            else recovery.serving(paths, environment)
        )
        try:
            if environment.deploy.target == "kubernetes":
                record.checks = kubernetes.replace(paths, environment, labels, before, verify)
            elif environment.deploy.target == "host":
                record.checks = host.replace(paths, environment, bento, verify)
            else:
                record.checks = local.replace(paths, name, environment.port, bento, verify)
        except Exception as error:
            record.checks = getattr(error, "checks", {})
            record.error = str(error)
            served = recovery.serving(paths, environment) or "nothing"
            served = record.checks.get("kubernetes", {}).get("serving", served)
            written = recovery.record_failure(paths, record)
            raise DeployFailed(
                f"{action} of {bento} to {name} failed, {name} still serves {served}: "
                f"{error}{written}"
            ) from error
        try:
            record = records.finish(paths, record.model_copy(update={"success": True}))
        except Exception as error:
            message = recovery.undo_switch(paths, environment, record, served_before, error)
            raise DeployFailed(message) from error
        # The record is the truth from here: what fails now is derived from it, and the
        # next command redoes the aliases (this job's report is for this job only).
        unfinished = []
        for what, step in (
            ("moving the alias (the next deploy, status or down moves it)", records.tag_registry),
            (f"writing reports/deploys/{name}.json", recovery.report),
        ):
            try:
                step(paths, record)
            except Exception as error:
                unfinished.append(f"{what}: {error}")
    if unfinished:
        raise Unfinished(
            f"{action}: {bento} serves {name} and is recorded (run {record.run_id}), but "
            + "; ".join(unfinished)
        )
    return record


def promote(params: Params, paths: Paths, name: str) -> DeployRecord | kubernetes.DryRun:
    """Deploy to `name` the bento serving in (and verified by) the environment it requires."""
    environment = get(paths, name)
    if environment.requires is None:
        raise Refused(f"{name} requires no environment: deploy to it with make deploy ENV={name}")
    with _locked(paths):
        recovery.reconcile(paths)
        source = records.current(paths, environment.requires)
    if source is None:
        raise Refused(
            f"no bento has been verified in {environment.requires} yet: "
            f"run {_step(load_all(paths)[environment.requires])} first"
        )
    return deploy(params, paths, name, source.bento, action="promote")


def rollback(params: Params, paths: Paths, name: str) -> DeployRecord | kubernetes.DryRun:
    """Redeploy the bento `name` served before its current one (a new deploy record).

    With no such record (records lost, or a cluster older than the release store), a
    kubernetes environment goes back to the Deployment's previous revision (`kubectl
    rollout undo`), recorded as a rollback of an unknown bento; a local one is refused.
    """
    environment = get(paths, name)
    with _locked(paths):
        recovery.reconcile(paths)
        target = records.previous(paths, name)
    if target is not None:
        return deploy(params, paths, name, target.bento, action="rollback")
    if environment.deploy.target != "kubernetes":
        raise Refused(f"{name} has no previously verified bento to roll back to")
    if kubernetes.dry_run():
        return kubernetes.plan_undo(environment)
    with _locked(paths):
        before = records.current(paths, name)
        record = _open_record(
            paths, environment, before, "rollback", kubernetes.UNDONE, "switching"
        )
        try:
            record.checks = kubernetes.undo(environment)
        except checks.CheckFailed as error:
            record.checks, record.error = error.checks, str(error)
            record = records.finish(paths, record)
            recovery.report(paths, record)
            served = error.checks["kubernetes"]["serving"]
            raise DeployFailed(
                f"rollback of {name} by kubectl rollout undo failed, {name} serves {served}: "
                f"{error}"
            ) from error
        record.success = True
        record = records.finish(paths, record)
    recovery.report(paths, record)
    return record


def status(paths: Paths) -> list[EnvironmentStatus]:
    """Per environment: what serves, from which record, and whether it answers now.

    Settles what interrupted deploys left first, unless a deploy is running now.
    """
    with _locked(paths, wait=False) as held:
        if held:
            recovery.reconcile(paths)
    rows = []
    for name, environment in load_all(paths).items():
        server = serving.read_state(paths, name)
        mine = records.read(paths, name)
        done = [record for record in mine if record.success]
        current = done[-1] if done else None
        last = mine[-1] if mine else None
        if environment.deploy.target == "host":
            running = host.serving(environment)
            url, healthy = environment.url, running is not None
        else:
            running = server.bento if server and serving.running(server) else None
            url, healthy = server.url if server else environment.url, serving.healthy(server)
        rows.append(
            EnvironmentStatus(
                environment=name,
                url=url,
                running=running,
                healthy=healthy,
                record=current,
                last_failure=last if last and not last.success else None,
            )
        )
    return rows


def _gates(record: DeployRecord) -> str:
    found = record.checks.get("loadtest")
    if not found:
        return "-"
    return f"p99 {found['p99_ms']:.0f}ms {found['rps']:.0f}rps err {found['errors']}"


def format_status(rows: list[EnvironmentStatus]) -> str:
    header = ("env", "url", "bento", "model", "commit", "gates", "action", "when", "by", "healthy")
    lines = [header]
    for row in rows:
        record = row.record
        lines.append(
            (
                row.environment,
                row.url or "-",
                row.running or "-",
                (record and record.model_version) or "-",
                ((record and record.git_commit) or "-")[:8],
                _gates(record) if record else "-",
                (record and record.action) or "-",
                (record and record.time) or "-",
                (record and record.actor) or "-",
                "yes" if row.healthy else "no",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
    for row in rows:
        if (record := row.record) and record.phase == "recovered":
            text += (
                f"\n{row.environment}: {record.action} of {record.bento} at "
                f"{record.time} was interrupted before it recorded its outcome; its bento "
                "had passed its checks and was serving, so it was recorded as verified later"
            )
        if failure := row.last_failure:
            attempt = f"\n{row.environment}: last {failure.action} of {failure.bento}"
            if failure.status == "RUNNING":
                text += f"{attempt} started at {failure.time} and recorded no outcome"
                text += " (still running, or killed)"
            else:
                text += f"{attempt} failed at {failure.time}: {failure.error}"
    return text


def down(paths: Paths, name: str | None = None, lasting: bool = True) -> list[str]:
    """Stop the servers of `name` (default: every environment); return what stopped.

    `lasting=False` (a CI job's end) leaves lasting hosts serving: they are meant to outlive
    the job that deployed them."""
    environments = load_all(paths)
    names = [get(paths, name).name] if name else list(environments)
    stopped = []
    with _locked(paths):
        recovery.reconcile(paths)
        for environment in names:
            if environments[environment].deploy.target == "host":
                if lasting and host.down(environments[environment]):
                    stopped.append(environment)
                continue
            server = serving.read_state(paths, environment)
            if server is not None:
                serving.stop(server)
                stopped.append(environment)
            serving.clear_state(paths, environment)
            local.stop_candidate(paths, environment)
    return stopped
