"""The kubernetes target: the bento as an image behind a Deployment, Service and autoscaler.

The manifests (rendered and validated offline by kubernetes_manifests.py) are kept per
bento version in .state/kubernetes/<env>/<version>/, so a rollback re-applies exactly
what ran before.
The commands (`bentoml containerize`, `docker push`, `docker image inspect`, `kubectl apply`,
`kubectl rollout status`; `kubectl rollout undo` for a rollback the release store has no
record for) run as subprocesses, as CI runs them where Docker and the cluster credentials
(KUBECONFIG) exist. With KUBERNETES_DRY_RUN=1 nothing runs: the manifests are written to
reports/deploy/<env>/ and the commands are printed.

The Deployment names its image by digest (`<repository>@sha256:...`), read back from
Docker after the push: a tag can be pushed again, a digest always means the same image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..config import Paths
from . import kubernetes_manifests as manifests
from .checks import CheckFailed, health
from .environments import Environment
from .records import DeployRecord

DRY_RUN_VARIABLE = "KUBERNETES_DRY_RUN"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The record of a rollback done by the cluster (`kubectl rollout undo`): it checks no bento.
UNDONE = "unknown (kubectl rollout undo)"

Runner = Callable[[Sequence[str]], str]


class CommandFailed(RuntimeError):
    """A docker, kubectl or bentoml command exited non-zero (or is not installed)."""


def dry_run() -> bool:
    return os.environ.get(DRY_RUN_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def _kubectl(environment: Environment, *args: str) -> list[str]:
    return ["kubectl", *args, "-n", manifests.settings(environment).namespace]


def _rollout_status(environment: Environment) -> list[str]:
    timeout = f"--timeout={manifests.settings(environment).rollout_timeout_seconds}s"
    deployment = f"deployment/{manifests.app_name()}"
    return _kubectl(environment, "rollout", "status", deployment, timeout)


def apply_commands(environment: Environment, folder: Path) -> list[list[str]]:
    """Apply the manifests in `folder`, then wait until the new pods are ready."""
    return [_kubectl(environment, "apply", "-f", str(folder)), _rollout_status(environment)]


def build_commands(environment: Environment, bento: str) -> list[list[str]]:
    """Build and push the image, then ask Docker for the digest the push gave it."""
    tagged = manifests.image(environment, bento)
    return [
        ["bentoml", "containerize", bento, "-t", tagged],
        ["docker", "push", tagged],
        ["docker", "image", "inspect", tagged],
    ]


def commands(environment: Environment, bento: str, folder: Path) -> list[list[str]]:
    """Every command a deploy of `bento` runs, in order, before its checks."""
    return [*build_commands(environment, bento), *apply_commands(environment, folder)]


def undo_commands(environment: Environment) -> list[list[str]]:
    """Back to the Deployment's previous revision, wait for it, then read what it runs."""
    deployment = f"deployment/{manifests.app_name()}"
    return [
        _kubectl(environment, "rollout", "undo", deployment),
        _rollout_status(environment),
        _kubectl(environment, "get", deployment, "-o", "json"),
    ]


def run(command: Sequence[str]) -> str:
    """Run one command, its output in the log; raise CommandFailed naming it if it fails."""
    print(f"$ {shlex.join(command)}", flush=True)
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CommandFailed(
            f"{command[0]} is not installed (needed for: {shlex.join(command)})"
        ) from None
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CommandFailed(f"`{shlex.join(command)}` exited {done.returncode}: {last[0]}")
    return done.stdout


def _familiar(repository: str) -> str:
    """A repository as Docker lists it in RepoDigests: Docker Hub's prefixes dropped."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if repository.startswith(prefix):
            return repository.removeprefix(prefix).removeprefix("library/")
    return repository


def pushed_digest(environment: Environment, bento: str, runner: Runner = run) -> str:
    """The digest of the image just pushed, from `docker image inspect` (its JSON, parsed).

    RepoDigests holds `<repository>@sha256:...` for each repository the image is in, so
    the entry of the environment's repository is taken, never simply the first.
    """
    tagged = manifests.image(environment, bento)
    repository = _familiar(manifests.settings(environment).image)
    problem = f"docker push {tagged} gave no digest that can be read"
    try:
        found = json.loads(runner(["docker", "image", "inspect", tagged]))
        listed = [str(entry) for entry in found[0].get("RepoDigests") or []]
    except CommandFailed as error:
        raise CommandFailed(f"{problem}: {error}") from None
    except (ValueError, LookupError, AttributeError):
        raise CommandFailed(
            f"{problem}: `docker image inspect` answered no list of images"
        ) from None
    for entry in listed:
        name, _, digest = entry.rpartition("@")
        if _familiar(name) == repository and DIGEST.fullmatch(digest):
            return digest
    raise CommandFailed(f"{problem}: RepoDigests lists no {repository}@sha256:... ({listed})")


class DryRun(BaseModel):
    """What a deploy would do with $DRY_RUN_VARIABLE set: nothing runs, nothing is recorded."""

    model_config = ConfigDict(frozen=True)

    action: Literal["dry-run"] = "dry-run"
    environment: str
    bento: str
    model_version: str | None
    url: str | None
    commands: list[str]
    manifests: str | None = None  # the validated manifests it would apply


def plan(paths: Paths, environment: Environment, labels: dict[str, Any]) -> DryRun:
    """The dry run: write validated manifests to reports/deploy/<env>/ and print the commands."""
    folder = manifests.write(environment, labels, paths.reports / "deploy" / environment.name)
    steps = [shlex.join(command) for command in commands(environment, labels["bento"], folder)]
    (folder / "commands.sh").write_text("\n".join(steps) + "\n", encoding="utf-8")
    print(f"${DRY_RUN_VARIABLE} is set: nothing runs. Validated manifests: {folder}")
    pinned = manifests.pinned(environment, "<digest>")
    print(f"  (they name the image by tag; a deploy names it {pinned})")
    print("\n".join(f"  {step}" for step in steps))
    return DryRun(
        environment=environment.name,
        bento=labels["bento"],
        model_version=labels.get("model_version"),
        url=environment.url,
        manifests=str(folder),
        commands=steps,
    )


def _restore(
    paths: Paths,
    environment: Environment,
    before: DeployRecord | None,
    runner: Runner,
    applied: bool,
) -> str:
    """Re-apply the previous record's manifests; return what the environment serves now.

    `applied`: whether `kubectl apply` succeeded (else it may have changed nothing).
    """
    if before is None or before.target != "kubernetes":
        return "no verified bento (no previous kubernetes record to roll back to)"
    if before.bento == UNDONE:  # no manifests: back to the cluster's previous revision
        if not applied:
            return "an unknown state (kubectl apply failed; no manifests to re-apply)"
        try:
            for command in undo_commands(environment)[:2]:
                runner(command)
        except CommandFailed as error:
            return f"an unknown state: undoing the rollout failed too ({error})"
        return UNDONE
    folder = manifests.kept_folder(before.checks)
    if folder is None:  # rendered again from the record, at the digest it ran
        digest = before.checks.get("kubernetes", {}).get("digest")
        folder = manifests.manifests_folder(paths, environment, before.bento)
        manifests.write(environment, before.labels(), folder, digest)
    try:
        for command in apply_commands(environment, folder):
            runner(command)
    except CommandFailed as error:
        return f"an unknown state: re-applying {before.bento} failed too ({error})"
    return before.bento


def replace(
    paths: Paths,
    environment: Environment,
    labels: dict[str, Any],
    before: DeployRecord | None,
    verify: Callable[[str, bool], dict[str, Any]],
    runner: Runner = run,
) -> dict[str, Any]:
    """Build, push and roll out `labels['bento']`, then check it at the environment's URL.

    `before` is the environment's current record. If the rollout or a check fails after
    the manifests were applied, the previous record's manifests are applied again.
    """
    bento = labels["bento"]
    folder = manifests.manifests_folder(paths, environment, bento)
    state: dict[str, Any] = {
        "tag": manifests.image(environment, bento),
        "manifests": str(folder),
        "commands": [shlex.join(command) for command in commands(environment, bento, folder)],
    }
    results: dict[str, Any] = {"kubernetes": state}
    touched = applied = False
    try:
        containerize, push, _ = build_commands(environment, bento)
        runner(containerize)
        runner(push)
        state["digest"] = pushed_digest(environment, bento, runner)
        state["image"] = manifests.pinned(environment, state["digest"])
        manifests.write(environment, labels, folder, state["digest"])
        apply, wait = apply_commands(environment, folder)
        # From `kubectl apply` on, the cluster may have changed: a failure must restore.
        touched = True
        runner(apply)
        applied = True
        runner(wait)
        results.update(verify(environment.url, True))
    except Exception as error:
        results.update(getattr(error, "checks", {}))
        served = (
            _restore(paths, environment, before, runner, applied)
            if touched
            else (before.bento if before else "what it served before (nothing was applied)")
        )
        state["serving"] = served
        raise CheckFailed(str(error), results) from error
    state["serving"] = bento
    return results


def plan_undo(environment: Environment) -> DryRun:
    """The dry run of `undo`: print its commands, run none."""
    steps = [shlex.join(command) for command in undo_commands(environment)]
    print(f"${DRY_RUN_VARIABLE} is set: nothing runs.")
    print("\n".join(f"  {step}" for step in steps))
    return DryRun(
        environment=environment.name,
        bento=UNDONE,
        model_version=None,
        url=environment.url,
        commands=steps,
    )


def _reported(deployment: str) -> dict[str, Any]:
    """The bento and image the Deployment's pod template names (`kubectl get -o json`)."""
    try:
        template = json.loads(deployment)["spec"]["template"]
        bento = template["metadata"]["annotations"]["bento-tag"]
        return {"serving": bento, "image": template["spec"]["containers"][0]["image"]}
    except (ValueError, LookupError, TypeError):
        return {}


def serving(environment: Environment, runner: Runner = run) -> str | None:
    """The bento the Deployment's pod template names, as the cluster reports it (None: none
    is named). Raises CommandFailed when kubectl cannot read the Deployment."""
    get_step = undo_commands(environment)[2]
    return _reported(runner(get_step)).get("serving")


def restore(
    paths: Paths, environment: Environment, before: DeployRecord | None, runner: Runner = run
) -> str:
    """Apply `before` (the environment's last verified record) again, after a deploy cut
    short left its unchecked rollout running; return what the environment serves now."""
    return _restore(paths, environment, before, runner, applied=True)


def undo(
    environment: Environment,
    check: Callable[[str], dict[str, Any]] = health,
    runner: Runner = run,
) -> dict[str, Any]:
    """Roll the Deployment back to the revision before its current one, as the cluster
    remembers it: for when the release store holds no earlier record to redeploy.

    The cluster's previous revision is whatever was applied before, checked or not (a
    deploy that failed and was restored is a revision too), so the checks say what the
    pods now run, as the cluster reports it, and whether the URL answers /readyz.
    """
    undo_step, status_step, get_step = undo_commands(environment)
    state: dict[str, Any] = {
        "commands": [shlex.join(step) for step in (undo_step, status_step, get_step)],
        "serving": "what it served before (the undo failed)",
    }
    results: dict[str, Any] = {"kubernetes": state}
    try:
        runner(undo_step)
        state["serving"] = "an unknown state (the undone rollout did not finish)"
        runner(status_step)
    except CommandFailed as error:
        raise CheckFailed(str(error), results) from error
    state["serving"] = UNDONE
    try:
        state.update(_reported(runner(get_step)))
    except CommandFailed as error:
        state["reported"] = str(error)
    results["health"] = check(environment.url)
    if not results["health"]["passed"]:
        detail = results["health"]["detail"]
        raise CheckFailed(f"health: {detail} at {environment.url}", results)
    return results
