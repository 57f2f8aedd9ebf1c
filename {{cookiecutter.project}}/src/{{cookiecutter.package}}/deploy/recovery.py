"""Deploys cut short: a switch whose record could not be written, a deploy that died.

What serves and what the release store says serves must agree. A deploy that switched but
cannot record it serves the old bento again and records its failure (`undo_switch`); what
cannot be put right at once is left as a RUNNING run with its journal (records.py), and
the next deploy, status or down settles it from what then serves (`reconcile`).
"""

from __future__ import annotations

from typing import Any

from ..config import Paths
from ..serving import healthy, read_state
from . import checks, host, kubernetes, local, records
from .environments import Environment, load_all
from .records import DeployRecord


def record_failure(paths: Paths, record: DeployRecord) -> str:
    """Record a failed attempt; if that fails too, say so (the next command settles it)."""
    try:
        report(paths, records.finish(paths, record))
    except Exception as error:
        return f" (the failure could not be recorded: {error}; the next command records it)"
    return ""


def undo_switch(
    paths: Paths,
    environment: Environment,
    record: DeployRecord,
    before: str | None,
    error: Exception,
) -> str:
    """The switch happened but its record could not be written: serve `before` again and
    record the attempt as failed, so what serves and what the history says agree. Returns
    the one-line message the deploy fails with.

    Whatever of this fails, the run stays RUNNING with its journal: the next deploy, status
    or down finishes it from what then serves (see `reconcile`).
    """
    name, bento, action = environment.name, record.bento, record.action
    note = ""
    try:
        put_back(paths, environment, before)
        served = before or "nothing"
    except Exception as undo_error:
        served = serving(paths, environment) or "nothing"
        note = f"; putting back {before or 'nothing'} failed too: {undo_error}"
    if served == bento:
        return (
            f"{action} of {bento} to {name}: it serves, but recording it failed ({error})"
            f"{note}; the next deploy, status or down records it"
        )
    record.success, record.error = False, f"the outcome could not be recorded: {error}{note}"
    written = record_failure(paths, record)
    return (
        f"{action} of {bento} to {name} failed, {name} still serves {served}: "
        f"the outcome could not be recorded ({error}){note}{written}"
    )


def put_back(paths: Paths, environment: Environment, bento: str | None) -> None:
    """Serve `bento` (None: nothing) in `environment` again after a switch."""
    if environment.deploy.target == "kubernetes":
        kubernetes.undo(environment)
    elif environment.deploy.target == "host":
        if bento is None:
            host.down(environment)
        else:
            host.replace(paths, environment, bento, answers)
    else:
        local.put_back(paths, environment.name, environment.port, bento)


def answers(url: str, _full: bool) -> dict[str, Any]:
    """The check for a bento put back: it served before, so it must only answer."""
    found = checks.health(url)
    if not found["passed"]:
        raise checks.CheckFailed(f"health: {found['detail']} at {url}", {"health": found})
    return {"health": found}


def reconcile(paths: Paths) -> list[DeployRecord]:
    """Settle what deploys cut short left (call it holding the deploy lock).

    A RUNNING record whose process is gone is finished from what serves now: as a success
    if it is the environment's last attempt, its candidate passed (journal: `switching`)
    and its bento answers there; else as failed. On a cluster, what serves is what the
    Deployment names (kubectl), and a deploy cut short between its rollout and the end of
    its checks is put back to the last verified record. Then each environment's alias is
    moved to its current deploy if a failed write left it behind. Returns the records settled.
    """
    settled = []
    for name, environment in load_all(paths).items():
        mine = records.read(paths, name)
        verified = [record for record in mine if record.success]
        if left := [r for r in mine if records.abandoned(r)]:
            try:
                served = (
                    kubernetes.serving(environment)  # what the Deployment names
                    if environment.deploy.target == "kubernetes"
                    else serving(paths, environment)
                )
            except kubernetes.CommandFailed:
                continue  # the cluster cannot be read now: a later command settles these
            for record in left:
                ok = record is mine[-1] and record.phase == "switching"
                ok = ok and record.bento == served
                error = None if ok else (
                    f"interrupted before it recorded its outcome; {name} then served "
                    f"{served or 'nothing'}"
                )  # fmt: skip
                last = record is mine[-1]
                if not ok and last and _unchecked_rollout(environment, served, record):
                    now = kubernetes.restore(paths, environment, verified[-1] if verified else None)
                    error = f"{error} (its unchecked rollout); put back: {name} serves {now}"
                # In place: the settled records count below, as `mine`'s successes.
                record.success, record.phase, record.error = ok, "recovered", error
                settled.append(records.finish(paths, record))
        if done := [record for record in mine if record.success]:
            records.retag(paths, done[-1])
    return settled


def _unchecked_rollout(environment: Environment, served: str | None, record: DeployRecord) -> bool:
    """Whether a cluster runs the bento of a deploy cut short before its checks passed:
    its rollout comes before its checks (blue-green targets switch only after them)."""
    return environment.deploy.target == "kubernetes" and served == record.bento


def serving(paths: Paths, environment: Environment) -> str | None:
    """The bento that answers in `environment` now (local and host targets)."""
    if environment.deploy.target == "host":
        return host.serving(environment)
    server = read_state(paths, environment.name)
    return server.bento if server is not None and healthy(server) else None


def report(paths: Paths, record: DeployRecord) -> None:
    """This job's deploy, as a report beside the others (`make summary` shows it)."""
    folder = paths.reports / "deploys"
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{record.environment}.json"
    partial = file.with_name(file.name + ".tmp")
    partial.write_text(record.model_dump_json(indent=2) + "\n")
    partial.replace(file)
