"""The kubernetes target's manifests: a Deployment, Service and autoscaler for a bento.

Rendered from the environment file as plain dicts, validated offline against the
Kubernetes schemas bundled with kubernetes-validate, and written one file each to a
folder: per bento version in .state/kubernetes/<env>/<version>/, where a restore finds
them again. Nothing here runs a tool: kubernetes.py builds, pushes and applies.

The Deployment names its image by digest (`<repository>@sha256:...`) when one is given,
as every real deploy does; a tag can be pushed again, a digest always means the same image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..config import PROJECT, Paths
from .environments import Environment, KubernetesDeploy

# The Kubernetes API version whose schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.34"
# Where images built by `bentoml containerize` serve.
CONTAINER_PORT = 3000
# Those images run as the user `bentoml`, uid and gid 1034, which owns the bento. The image
# names the user, not the number, so the kubelet can enforce runAsNonRoot only when the pod
# gives the number. BentoML writes only to $BENTOML_HOME and /tmp: with a read-only root
# filesystem, both are emptyDir volumes (the bento itself stays in /home/bentoml/bento), and
# so is the folder of the service's prediction log (monitoring; ship it off the pod to keep it).
BENTO_UID = 1034
BENTOML_HOME = "/var/lib/bentoml"
MONITORING_PATH = "/var/lib/monitoring"
WRITABLE = {"tmp": "/tmp", "bentoml-home": BENTOML_HOME, "monitoring": MONITORING_PATH}
FILES = ("deployment.yaml", "service.yaml", "hpa.yaml")


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


def _hardened(**fields: Any) -> dict[str, Any]:
    """A securityContext: a non-root user by number, the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": BENTO_UID,
        "runAsGroup": BENTO_UID,
        **fields,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(config: KubernetesDeploy, image_ref: str) -> dict[str, Any]:
    resources = {"cpu": config.resources.cpu, "memory": config.resources.memory}
    return {
        "name": "bento",
        "image": image_ref,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "env": [
            {"name": "BENTOML_HOME", "value": BENTOML_HOME},
            {"name": "MONITORING_PATH", "value": MONITORING_PATH},
        ],
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


def render(
    environment: Environment, labels: dict[str, Any], digest: str | None = None
) -> list[dict[str, Any]]:
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


def validate(manifests: list[dict[str, Any]]) -> None:
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


def write(
    environment: Environment, labels: dict[str, Any], folder: Path, digest: str | None = None
) -> Path:
    """Render, validate and write the manifests to `folder`, one file each."""
    manifests = render(environment, labels, digest)
    validate(manifests)
    folder.mkdir(parents=True, exist_ok=True)
    for file, manifest in zip(FILES, manifests, strict=True):
        (folder / file).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return folder


def manifests_folder(paths: Paths, environment: Environment, bento: str) -> Path:
    return paths.state / "kubernetes" / environment.name / bento_version(bento)


def kept_folder(checks: dict[str, Any]) -> Path | None:
    """The manifests a deploy with these `checks` applied, if kept here and still naming
    the image it ran."""
    kept = checks.get("kubernetes", {})
    if not kept.get("manifests"):
        return None
    file = Path(kept["manifests"]) / FILES[0]
    try:
        pod = yaml.safe_load(file.read_text(encoding="utf-8"))["spec"]["template"]["spec"]
        return file.parent if pod["containers"][0]["image"] == kept.get("image") else None
    except (AttributeError, OSError, LookupError, TypeError, yaml.YAMLError):
        return None
