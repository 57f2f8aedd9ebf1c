"""The kubernetes target, tested up to the boundary: there is no Docker and no cluster here.

Rendered manifests are validated against the real Kubernetes schemas (offline, bundled with
kubernetes-validate); the commands a deploy runs are checked as data, and run for real
against stand-in `bentoml`, `docker` and `kubectl` scripts that log their arguments.
Building the image, pushing it and the cluster's own behaviour are not exercised here.
"""

from __future__ import annotations

import os

import pytest
import yaml

from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy import kubernetes
from {{ cookiecutter.package }}.deploy.checks import CheckFailed
from {{ cookiecutter.package }}.deploy.environments import load

pytestmark = pytest.mark.unit

V1 = {"bento": "churn_model_service:v1aaaa", "model_version": "3", "git_commit": "a" * 40}
V2 = {"bento": "churn_model_service:v2bbbb", "model_version": "4", "git_commit": "b" * 40}


def production(tmp_path, **changes):
    deploy = {
        "target": "kubernetes",
        "namespace": "ml-prod",
        "replicas": 3,
        "image": "registry.example.com/churn-model",
        "url": "https://churn.example.com",
        "resources": {"cpu": "500m", "memory": "1Gi"},
        "autoscaling": {"min_replicas": 2, "max_replicas": 6, "cpu_percent": 70},
        "rollout_timeout_seconds": 120,
    }
    deploy.update(changes)
    deploy = {key: value for key, value in deploy.items() if value is not None}
    document = {
        "name": "production",
        "requires": "preprod",
        "gates": {"latency_p99_ms": 500, "min_rps": 15, "load_test": {"users": 3, "seconds": 10}},
        "deploy": deploy,
    }
    file = tmp_path / "environments" / "production.yaml"
    file.parent.mkdir(exist_ok=True)
    file.write_text(yaml.safe_dump(document))
    return file


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {manifest["kind"]: manifest for manifest in manifests}


def test_the_rendered_manifests_validate_against_the_kubernetes_schemas(tmp_path):
    manifests = kubernetes.render(load(production(tmp_path)), V1)

    kubernetes.validate(manifests)
    assert [(m["apiVersion"], m["kind"]) for m in manifests] == [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ]


def test_a_manifest_the_schema_rejects_is_named_with_its_field(tmp_path):
    deployment = kubernetes.render(load(production(tmp_path)), V1)[0]
    deployment["spec"]["replicas"] = "three"

    with pytest.raises(ValueError, match=r"Deployment churn-model .* field spec\.replicas"):
        kubernetes.validate([deployment])


def test_the_image_is_the_repository_tagged_with_the_bento_version(tmp_path):
    deployment = by_kind(kubernetes.render(load(production(tmp_path)), V1))["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert container["image"] == "registry.example.com/churn-model:v1aaaa"


def test_replicas_resources_and_autoscaling_bounds_come_from_the_environment_file(tmp_path):
    manifests = by_kind(kubernetes.render(load(production(tmp_path)), V1))
    deployment, autoscaler = manifests["Deployment"], manifests["HorizontalPodAutoscaler"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert deployment["metadata"]["namespace"] == "ml-prod"
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert autoscaler["spec"]["minReplicas"] == 2
    assert autoscaler["spec"]["maxReplicas"] == 6
    assert autoscaler["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_pods_serve_on_port_3000_with_probes_and_carry_the_bento_model_and_commit(tmp_path):
    deployment = kubernetes.render(load(production(tmp_path)), V1)[0]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]

    assert container["ports"] == [{"name": "http", "containerPort": 3000}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["metadata"]["annotations"]["bento-tag"] == V1["bento"]
    assert pod["metadata"]["labels"]["bento-version"] == "v1aaaa"
    assert pod["metadata"]["labels"]["model-version"] == "3"
    assert pod["metadata"]["labels"]["git-commit"] == "a" * 40


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"replicas": 0}, r"field deploy\.replicas: Input should be greater than or equal to 1"),
        ({"image": None}, r"field deploy\.image: Field required"),
        ({"image": "registry.example.com/churn-model:1.0"}, r"must be a repository without"),
        ({"namespace": "ML Prod"}, r"field deploy\.namespace"),
        ({"resources": {"cpu": "half", "memory": "1Gi"}}, r"field deploy\.resources\.cpu"),
        (
            {"autoscaling": {"min_replicas": 4, "max_replicas": 2, "cpu_percent": 70}},
            r"max_replicas \(2\) is below min_replicas \(4\)",
        ),
    ],
    ids=["no-replicas", "missing-image", "tagged-image", "bad-namespace", "bad-cpu", "bounds"],
)
def test_a_bad_kubernetes_field_is_an_error_naming_the_file_and_field(tmp_path, changes, message):
    file = production(tmp_path, **changes)

    with pytest.raises(ValueError, match=rf"production\.yaml: .*{message}"):
        load(file)


def test_a_dry_run_plans_exactly_containerize_push_apply_and_rollout_status(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KUBERNETES_DRY_RUN", "1")
    environment = load(production(tmp_path))

    assert kubernetes.dry_run()
    plan = kubernetes.plan(Paths(tmp_path), environment, V1)

    folder = tmp_path / "reports" / "deploy" / "production"
    assert plan["commands"] == [
        "bentoml containerize churn_model_service:v1aaaa "
        "-t registry.example.com/churn-model:v1aaaa",
        "docker push registry.example.com/churn-model:v1aaaa",
        f"kubectl apply -f {folder} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    ]
    assert sorted(p.name for p in folder.iterdir()) == [
        "commands.sh",
        "deployment.yaml",
        "hpa.yaml",
        "service.yaml",
    ]
    kubernetes.validate([yaml.safe_load((folder / f).read_text()) for f in kubernetes.FILES])
    assert "docker push" in capsys.readouterr().out


@pytest.fixture
def tools(tmp_path, monkeypatch, stand_in_tools):
    """Stand-in bentoml, docker and kubectl on PATH (see tests/conftest.py)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = stand_in_tools(folder)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    def fail_once(tool: str, subcommand: str) -> None:
        (folder / f"fail-{tool}-{subcommand}").touch()

    return calls, fail_once


def checked(url: str, full: bool) -> dict:
    assert url == "https://churn.example.com"
    return {"health": {"passed": True}}


def test_a_real_run_calls_containerize_push_apply_and_rollout_status_in_order(tmp_path, tools):
    calls, _ = tools
    environment = load(production(tmp_path))

    results = kubernetes.replace(Paths(tmp_path), environment, V1, None, checked)

    folder = tmp_path / ".state" / "kubernetes" / "production" / "v1aaaa"
    assert calls() == [
        "bentoml containerize churn_model_service:v1aaaa "
        "-t registry.example.com/churn-model:v1aaaa",
        "docker push registry.example.com/churn-model:v1aaaa",
        f"kubectl apply -f {folder} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    ]
    assert results["health"] == {"passed": True}
    assert results["kubernetes"]["serving"] == V1["bento"]


def test_a_failed_rollout_reapplies_the_previous_manifests_and_fails(tmp_path, tools):
    calls, fail_once = tools
    paths, environment = Paths(tmp_path), load(production(tmp_path))
    first = kubernetes.replace(paths, environment, V1, None, checked)
    before = {**V1, "target": "kubernetes", "checks": first}
    fail_once("kubectl", "rollout")

    with pytest.raises(CheckFailed, match="rollout status .* exited 1") as failed:
        kubernetes.replace(paths, environment, V2, before, checked)

    state = tmp_path / ".state" / "kubernetes" / "production"
    assert calls()[4:] == [
        "bentoml containerize churn_model_service:v2bbbb "
        "-t registry.example.com/churn-model:v2bbbb",
        "docker push registry.example.com/churn-model:v2bbbb",
        f"kubectl apply -f {state / 'v2bbbb'} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
        f"kubectl apply -f {state / 'v1aaaa'} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    ]
    assert failed.value.checks["kubernetes"]["serving"] == V1["bento"]


def test_a_failed_check_after_the_rollout_also_restores_the_previous_bento(tmp_path, tools):
    calls, _ = tools
    paths, environment = Paths(tmp_path), load(production(tmp_path))
    before = {**V1, "target": "kubernetes", "checks": {}}

    def smoke_fails(url: str, full: bool) -> dict:
        raise CheckFailed("smoke: does not answer like the model", {"smoke": {"passed": False}})

    with pytest.raises(CheckFailed, match="smoke") as failed:
        kubernetes.replace(paths, environment, V2, before, smoke_fails)

    # No manifests were kept for v1: they are rendered again from its record.
    v1 = tmp_path / ".state" / "kubernetes" / "production" / "v1aaaa"
    assert calls()[-2] == f"kubectl apply -f {v1} -n ml-prod"
    assert failed.value.checks["smoke"] == {"passed": False}
    assert failed.value.checks["kubernetes"]["serving"] == V1["bento"]


def test_a_failed_push_touches_no_cluster(tmp_path, tools):
    calls, fail_once = tools
    fail_once("docker", "push")

    with pytest.raises(CheckFailed, match="docker push .* exited 1: error: it failed"):
        kubernetes.replace(Paths(tmp_path), load(production(tmp_path)), V2, None, checked)

    assert not [call for call in calls() if call.startswith("kubectl")]


def test_a_missing_tool_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(kubernetes.CommandFailed, match="kubectl is not installed"):
        kubernetes.run(["kubectl", "version"])
