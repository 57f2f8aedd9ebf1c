"""The kubernetes target: the bento as an image behind a Deployment, Service and autoscaler.

Manifests are rendered from the environment file as plain dicts, validated offline against
the Kubernetes schemas bundled with kubernetes-validate, and kept per bento version in
.state/kubernetes/<env>/<version>/, so a rollback re-applies exactly what ran before.
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

import yaml

from ..config import PROJECT, Paths
from .checks import CheckFailed, health
from .environments import Environment, KubernetesDeploy

DRY_RUN_VARIABLE = "KUBERNETES_DRY_RUN"
# The Kubernetes API version whose schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.34"
# Where images built by `bentoml containerize` serve.
CONTAINER_PORT = 3000
# Those images run as the user `bentoml`, uid and gid 1034, which owns the bento. The image
# names the user, not the number, so the kubelet can enforce runAsNonRoot only when the pod
# gives the number. BentoML writes only to $BENTOML_HOME and /tmp: with a read-only root
# filesystem, both are emptyDir volumes (the bento itself stays in /home/bentoml/bento).
BENTO_UID = 1034
BENTOML_HOME = "/var/lib/bentoml"
WRITABLE = {"tmp": "/tmp", "bentoml-home": BENTOML_HOME}
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
FILES = ("deployment.yaml", "service.yaml", "hpa.yaml")
# The record of a rollback done by the cluster (`kubectl rollout undo`): it checks no bento.
UNDONE = "unknown (kubectl rollout undo)"

Runner = Callable[[Sequence[str]], str]


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


def pinned(environment: Environment, digest: str) -> str:
    """The image as the Deployment names it: the repository at the pushed digest."""
    return f"{settings(environment).image}@{digest}"


def _hardened(**fields) -> dict:
    """A securityContext: a non-root user by number, the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": BENTO_UID,
        "runAsGroup": BENTO_UID,
        **fields,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(config: KubernetesDeploy, image_ref: str) -> dict:
    resources = {"cpu": config.resources.cpu, "memory": config.resources.memory}
    return {
        "name": "bento",
        "image": image_ref,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "env": [{"name": "BENTOML_HOME", "value": BENTOML_HOME}],
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
        "securityContext": _hardened(
            readOnlyRootFilesystem=True,
            allowPrivilegeEscalation=False,
            capabilities={"drop": ["ALL"]},
        ),
        "volumeMounts": [{"name": name, "mountPath": path} for name, path in WRITABLE.items()],
    }


def render(environment: Environment, labels: dict, digest: str | None = None) -> list[dict]:
    """Deployment, Service and HorizontalPodAutoscaler for the bento `labels` describes.

    The Deployment names the image by `digest` when given (every real deploy), else by tag.
    """
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
    image_ref = pinned(environment, digest) if digest else image(environment, bento)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": config.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": tags, "annotations": annotations},
                "spec": {
                    # The service calls no Kubernetes API: no token in the pods.
                    "automountServiceAccountToken": False,
                    "securityContext": _hardened(fsGroup=BENTO_UID),
                    "containers": [_container(config, image_ref)],
                    "volumes": [{"name": name, "emptyDir": {}} for name in WRITABLE],
                },
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


def write(environment: Environment, labels: dict, folder: Path, digest: str | None = None) -> Path:
    """Render, validate and write the manifests to `folder`, one file each."""
    manifests = render(environment, labels, digest)
    validate(manifests)
    folder.mkdir(parents=True, exist_ok=True)
    for file, manifest in zip(FILES, manifests, strict=True):
        (folder / file).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return folder


def manifests_folder(paths: Paths, environment: Environment, bento: str) -> Path:
    return paths.state / "kubernetes" / environment.name / bento_version(bento)


def _kubectl(environment: Environment, *args: str) -> list[str]:
    return ["kubectl", *args, "-n", settings(environment).namespace]


def _rollout_status(environment: Environment) -> list[str]:
    timeout = f"--timeout={settings(environment).rollout_timeout_seconds}s"
    return _kubectl(environment, "rollout", "status", f"deployment/{app_name()}", timeout)


def apply_commands(environment: Environment, folder: Path) -> list[list[str]]:
    """Apply the manifests in `folder`, then wait until the new pods are ready."""
    return [_kubectl(environment, "apply", "-f", str(folder)), _rollout_status(environment)]


def build_commands(environment: Environment, bento: str) -> list[list[str]]:
    """Build and push the image, then ask Docker for the digest the push gave it."""
    tagged = image(environment, bento)
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
    deployment = f"deployment/{app_name()}"
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
    tagged = image(environment, bento)
    repository = _familiar(settings(environment).image)
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


def plan(paths: Paths, environment: Environment, labels: dict) -> dict:
    """The dry run: write validated manifests to reports/deploy/<env>/ and print the commands."""
    folder = write(environment, labels, paths.reports / "deploy" / environment.name)
    steps = [shlex.join(command) for command in commands(environment, labels["bento"], folder)]
    (folder / "commands.sh").write_text("\n".join(steps) + "\n", encoding="utf-8")
    print(f"${DRY_RUN_VARIABLE} is set: nothing runs. Validated manifests: {folder}")
    print(f"  (they name the image by tag; a deploy names it {pinned(environment, '<digest>')})")
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


def _kept(record: dict) -> Path | None:
    """The manifests `record` applied, if kept here and still naming the image it ran."""
    kept = record.get("checks", {}).get("kubernetes", {})
    if not kept.get("manifests"):
        return None
    file = Path(kept["manifests"]) / FILES[0]
    try:
        pod = yaml.safe_load(file.read_text(encoding="utf-8"))["spec"]["template"]["spec"]
        return file.parent if pod["containers"][0]["image"] == kept.get("image") else None
    except (AttributeError, OSError, LookupError, TypeError, yaml.YAMLError):
        return None


def _restore(
    paths: Paths, environment: Environment, before: dict | None, runner: Runner, applied: bool
) -> str:
    """Re-apply the previous record's manifests; return what the environment serves now.

    `applied`: whether `kubectl apply` succeeded (else it may have changed nothing).
    """
    if before is None or before.get("target") != "kubernetes":
        return "no verified bento (no previous kubernetes record to roll back to)"
    if before["bento"] == UNDONE:  # no manifests: back to the cluster's previous revision
        if not applied:
            return "an unknown state (kubectl apply failed; no manifests to re-apply)"
        try:
            for command in undo_commands(environment)[:2]:
                runner(command)
        except CommandFailed as error:
            return f"an unknown state: undoing the rollout failed too ({error})"
        return UNDONE
    folder = _kept(before)
    if folder is None:  # rendered again from the record, at the digest it ran
        digest = before.get("checks", {}).get("kubernetes", {}).get("digest")
        folder = manifests_folder(paths, environment, before["bento"])
        write(environment, before, folder, digest)
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
    folder = manifests_folder(paths, environment, bento)
    state: dict = {
        "tag": image(environment, bento),
        "manifests": str(folder),
        "commands": [shlex.join(command) for command in commands(environment, bento, folder)],
    }
    results: dict = {"kubernetes": state}
    touched = applied = False
    try:
        containerize, push, _ = build_commands(environment, bento)
        runner(containerize)
        runner(push)
        state["digest"] = pushed_digest(environment, bento, runner)
        state["image"] = pinned(environment, state["digest"])
        write(environment, labels, folder, state["digest"])
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
            else (before["bento"] if before else "what it served before (nothing was applied)")
        )
        state["serving"] = served
        raise CheckFailed(str(error), results) from error
    state["serving"] = bento
    return results


def plan_undo(environment: Environment) -> dict:
    """The dry run of `undo`: print its commands, run none."""
    steps = [shlex.join(command) for command in undo_commands(environment)]
    print(f"${DRY_RUN_VARIABLE} is set: nothing runs.")
    print("\n".join(f"  {step}" for step in steps))
    return {
        "action": "dry-run",
        "environment": environment.name,
        "bento": UNDONE,
        "model_version": None,
        "url": environment.url,
        "commands": steps,
    }


def _reported(deployment: str) -> dict:
    """The bento and image the Deployment's pod template names (`kubectl get -o json`)."""
    try:
        template = json.loads(deployment)["spec"]["template"]
        bento = template["metadata"]["annotations"]["bento-tag"]
        return {"serving": bento, "image": template["spec"]["containers"][0]["image"]}
    except (ValueError, LookupError, TypeError):
        return {}


def undo(
    environment: Environment,
    check: Callable[[str], dict] = health,
    runner: Runner = run,
) -> dict:
    """Roll the Deployment back to the revision before its current one, as the cluster
    remembers it: for when the release store holds no earlier record to redeploy.

    The cluster's previous revision is whatever was applied before, checked or not (a
    deploy that failed and was restored is a revision too), so the checks say what the
    pods now run, as the cluster reports it, and whether the URL answers /readyz.
    """
    undo_step, status_step, get_step = undo_commands(environment)
    state: dict = {
        "commands": [shlex.join(step) for step in (undo_step, status_step, get_step)],
        "serving": "what it served before (the undo failed)",
    }
    results: dict = {"kubernetes": state}
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
