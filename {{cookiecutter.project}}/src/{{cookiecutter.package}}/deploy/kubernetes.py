"""The kubernetes target: the bento as an image behind a Deployment, Service and autoscaler.

Manifests are rendered from the environment file as plain dicts, validated offline against
the Kubernetes schemas bundled with kubernetes-validate, and kept per bento version in
.state/kubernetes/<env>/<version>/, so a rollback re-applies exactly what ran before.
The commands (`bentoml containerize`, `docker push`, `kubectl apply`, `kubectl rollout
status`) run as subprocesses, as CI runs them where Docker and the cluster credentials
(KUBECONFIG) exist. With KUBERNETES_DRY_RUN=1 nothing runs: the manifests are written to
reports/deploy/<env>/ and the commands are printed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from ..config import PROJECT, Paths
from .checks import CheckFailed
from .environments import Environment, KubernetesDeploy

DRY_RUN_VARIABLE = "KUBERNETES_DRY_RUN"
# The Kubernetes API version whose schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.34"
# Where images built by `bentoml containerize` serve.
CONTAINER_PORT = 3000
FILES = ("deployment.yaml", "service.yaml", "hpa.yaml")

Runner = Callable[[Sequence[str]], None]


class CommandFailed(RuntimeError):
    """A docker, kubectl or bentoml command exited non-zero (or is not installed)."""


def dry_run() -> bool:
    return os.environ.get(DRY_RUN_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def settings(environment: Environment) -> KubernetesDeploy:
    if not isinstance(environment.deploy, KubernetesDeploy):
        raise ValueError(f"environments/{environment.name}.yaml: deploy.target is not kubernetes")
    return environment.deploy


def app_name() -> str:
    """The Deployment, Service and autoscaler name: the project, as a DNS label."""
    return re.sub(r"[^a-z0-9-]+", "-", PROJECT.lower()).strip("-")[:63] or "bento"


def _label(value: object) -> str:
    """A valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", "" if value is None else str(value))
    return text[:63].strip("-._")


def bento_version(bento: str) -> str:
    name, _, version = bento.partition(":")
    if not name or not version:
        raise ValueError(f"bento tag {bento!r} is not of the form name:version")
    return version


def image(environment: Environment, bento: str) -> str:
    """The image the bento is built into: the environment's repository, tagged by version."""
    return f"{settings(environment).image}:{bento_version(bento)}"


def render(environment: Environment, labels: dict) -> list[dict]:
    """Deployment, Service and HorizontalPodAutoscaler for the bento `labels` describes."""
    config = settings(environment)
    name, bento = app_name(), labels["bento"]
    selector = {"app.kubernetes.io/name": name}
    tags = {
        **selector,
        "app.kubernetes.io/version": _label(bento_version(bento)),
        "environment": environment.name,
        "bento-name": _label(bento.partition(":")[0]),
        "bento-version": _label(bento_version(bento)),
        "model-version": _label(labels.get("model_version")),
        "git-commit": _label(labels.get("git_commit")),
    }
    annotations = {"bento-tag": bento}
    metadata = {
        "name": name,
        "namespace": config.namespace,
        "labels": tags,
        "annotations": annotations,
    }
    resources = {"cpu": config.resources.cpu, "memory": config.resources.memory}
    container = {
        "name": "bento",
        "image": image(environment, bento),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
        "resources": {"requests": resources, "limits": resources},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": config.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": tags, "annotations": annotations},
                "spec": {"containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": config.autoscaling.min_replicas,
            "maxReplicas": config.autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": config.autoscaling.cpu_percent,
                        },
                    },
                }
            ],
        },
    }
    return [deployment, service, autoscaler]


def validate(manifests: list[dict]) -> None:
    """Check each manifest against the bundled Kubernetes schemas; no network, no cluster."""
    from kubernetes_validate import ValidationError, validate

    for manifest in manifests:
        try:
            validate(manifest, KUBERNETES_VERSION, strict=True)
        except ValidationError as error:
            field = ".".join(str(part) for part in error.path) or "(top level)"
            raise ValueError(
                f"rendered {manifest.get('kind')} {manifest['metadata'].get('name')} does not "
                f"validate against Kubernetes {KUBERNETES_VERSION}: field {field}: {error.message}"
            ) from None


def write(environment: Environment, labels: dict, folder: Path) -> Path:
    """Render, validate and write the manifests to `folder`, one file each."""
    manifests = render(environment, labels)
    validate(manifests)
    folder.mkdir(parents=True, exist_ok=True)
    for file, manifest in zip(FILES, manifests, strict=True):
        (folder / file).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return folder


def manifests_folder(paths: Paths, environment: Environment, bento: str) -> Path:
    return paths.state / "kubernetes" / environment.name / bento_version(bento)


def _kubectl(environment: Environment, *args: str) -> list[str]:
    return ["kubectl", *args, "-n", settings(environment).namespace]


def apply_commands(environment: Environment, folder: Path) -> list[list[str]]:
    """Apply the manifests in `folder`, then wait until the new pods are ready."""
    timeout = f"--timeout={settings(environment).rollout_timeout_seconds}s"
    return [
        _kubectl(environment, "apply", "-f", str(folder)),
        _kubectl(environment, "rollout", "status", f"deployment/{app_name()}", timeout),
    ]


def commands(environment: Environment, bento: str, folder: Path) -> list[list[str]]:
    """Every command a deploy of `bento` runs, in order, before its checks."""
    tagged = image(environment, bento)
    return [
        ["bentoml", "containerize", bento, "-t", tagged],
        ["docker", "push", tagged],
        *apply_commands(environment, folder),
    ]


def run(command: Sequence[str]) -> None:
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


def plan(paths: Paths, environment: Environment, labels: dict) -> dict:
    """The dry run: write validated manifests to reports/deploy/<env>/ and print the commands."""
    folder = write(environment, labels, paths.reports / "deploy" / environment.name)
    steps = [shlex.join(command) for command in commands(environment, labels["bento"], folder)]
    (folder / "commands.sh").write_text("\n".join(steps) + "\n", encoding="utf-8")
    print(f"${DRY_RUN_VARIABLE} is set: nothing runs. Validated manifests: {folder}")
    print("\n".join(f"  {step}" for step in steps))
    return {
        "action": "dry-run",
        "environment": environment.name,
        "bento": labels["bento"],
        "model_version": labels.get("model_version"),
        "url": environment.url,
        "manifests": str(folder),
        "commands": steps,
    }


def _restore(paths: Paths, environment: Environment, before: dict | None, runner: Runner) -> str:
    """Re-apply the previous record's manifests; return what the environment serves now."""
    if before is None or before.get("target") != "kubernetes":
        return "no verified bento (no previous kubernetes record to roll back to)"
    kept = before.get("checks", {}).get("kubernetes", {}).get("manifests")
    folder = Path(kept) if kept and Path(kept).is_dir() else None
    if folder is None:
        folder = write(environment, before, manifests_folder(paths, environment, before["bento"]))
    try:
        for command in apply_commands(environment, folder):
            runner(command)
    except CommandFailed as error:
        return f"an unknown state: re-applying {before['bento']} failed too ({error})"
    return before["bento"]


def replace(
    paths: Paths,
    environment: Environment,
    labels: dict,
    before: dict | None,
    verify: Callable[[str, bool], dict],
    runner: Runner = run,
) -> dict:
    """Build, push and roll out `labels['bento']`, then check it at the environment's URL.

    `before` is the environment's current record. If the rollout or a check fails after
    the manifests were applied, the previous record's manifests are applied again.
    """
    bento = labels["bento"]
    folder = write(environment, labels, manifests_folder(paths, environment, bento))
    steps = commands(environment, bento, folder)
    results: dict = {
        "kubernetes": {
            "image": image(environment, bento),
            "manifests": str(folder),
            "commands": [shlex.join(command) for command in steps],
        }
    }
    applied = False
    try:
        for command in steps:
            # From `kubectl apply` on, the cluster may have changed: a failure must restore.
            applied = applied or command[:2] == ["kubectl", "apply"]
            runner(command)
        results.update(verify(environment.url, True))
    except Exception as error:
        results.update(getattr(error, "checks", {}))
        served = (
            _restore(paths, environment, before, runner)
            if applied
            else (before["bento"] if before else "what it served before (nothing was applied)")
        )
        results["kubernetes"]["serving"] = served
        raise CheckFailed(str(error), results) from error
    results["kubernetes"]["serving"] = bento
    return results
