"""The kubernetes target, tested up to the boundary: there is no Docker and no cluster here.

Rendered manifests are validated against the real Kubernetes schemas (offline, bundled with
kubernetes-validate); the commands a deploy runs are checked as data, and run for real
against stand-in `bentoml`, `docker` and `kubectl` scripts that log their arguments.
Building the image, pushing it and the cluster's own behaviour are not exercised here.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy import engine, kubernetes, kubernetes_manifests, records
from {{ cookiecutter.package }}.deploy.checks import CheckFailed
from {{ cookiecutter.package }}.deploy.environments import load
from {{ cookiecutter.package }}.deploy.records import DeployRecord

pytestmark = pytest.mark.unit

V1 = {"bento": "churn_model_service:v1aaaa", "model_version": "3", "git_commit": "a" * 40}
V2 = {"bento": "churn_model_service:v2bbbb", "model_version": "4", "git_commit": "b" * 40}


def verified(labels: dict, checks: dict) -> DeployRecord:
    """The environment's last verified record: a kubernetes deploy of `labels`."""
    return DeployRecord(
        environment="production", action="deploy", target="kubernetes", checks=checks, **labels
    )


REPOSITORY = "registry.example.com/churn-model"


def fake_digest(version: str) -> str:
    """The digest the stand-in docker gives the image tagged `version` (tests/conftest.py)."""
    return "sha256:" + version.encode().hex().ljust(64, "0")


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
    manifests = kubernetes_manifests.render(load(production(tmp_path)), V1)

    kubernetes_manifests.validate(manifests)
    assert [(m["apiVersion"], m["kind"]) for m in manifests] == [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ]


def test_a_manifest_the_schema_rejects_is_named_with_its_field(tmp_path):
    deployment = kubernetes_manifests.render(load(production(tmp_path)), V1)[0]
    deployment["spec"]["replicas"] = "three"

    with pytest.raises(ValueError, match=r"Deployment churn-model .* field spec\.replicas"):
        kubernetes_manifests.validate([deployment])


def test_the_image_is_named_by_its_digest_when_known_else_by_the_bento_version(tmp_path):
    environment, digest = load(production(tmp_path)), fake_digest("v1aaaa")

    def image(manifests: list[dict]) -> str:
        return by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]

    assert image(kubernetes_manifests.render(environment, V1, digest)) == f"{REPOSITORY}@{digest}"
    assert image(kubernetes_manifests.render(environment, V1)) == f"{REPOSITORY}:v1aaaa"


def test_pods_run_as_a_numeric_non_root_user_read_only_without_privileges_or_token(tmp_path):
    manifests = kubernetes_manifests.render(load(production(tmp_path)), V1, fake_digest("v1aaaa"))
    pod = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    context = container["securityContext"]

    assert pod["automountServiceAccountToken"] is False
    for level in (pod["securityContext"], context):
        assert level["runAsNonRoot"] is True
        # The uid `bentoml containerize` gives its user `bentoml`, owner of the bento.
        assert level["runAsUser"] == 1034
        assert level["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    kubernetes_manifests.validate(manifests)


def test_the_service_writes_only_to_emptydir_volumes_at_tmp_its_home_and_its_log(tmp_path):
    pod = kubernetes_manifests.render(load(production(tmp_path)), V1)[0]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    home, log = env["BENTOML_HOME"], env["MONITORING_PATH"]

    # The prediction log (monitoring) too: the root filesystem is read-only.
    assert sorted(mounts) == sorted(["/tmp", home, log])
    assert not home.startswith("/home/bentoml/bento")  # the bento itself stays read-only
    assert all(volumes[name] == {"name": name, "emptyDir": {}} for name in mounts.values())


def test_replicas_resources_and_autoscaling_bounds_come_from_the_environment_file(tmp_path):
    manifests = by_kind(kubernetes_manifests.render(load(production(tmp_path)), V1))
    deployment, autoscaler = manifests["Deployment"], manifests["HorizontalPodAutoscaler"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert deployment["metadata"]["namespace"] == "ml-prod"
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert autoscaler["spec"]["minReplicas"] == 2
    assert autoscaler["spec"]["maxReplicas"] == 6
    assert autoscaler["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_pods_serve_on_port_3000_with_probes_and_carry_the_bento_model_and_commit(tmp_path):
    deployment = kubernetes_manifests.render(load(production(tmp_path)), V1)[0]
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


def test_a_dry_run_plans_exactly_containerize_push_inspect_apply_and_rollout_status(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KUBERNETES_DRY_RUN", "1")
    environment = load(production(tmp_path))

    assert kubernetes.dry_run()
    plan = kubernetes.plan(Paths(tmp_path), environment, V1)

    folder = tmp_path / "reports" / "deploy" / "production"
    assert plan.commands == [
        "bentoml containerize churn_model_service:v1aaaa "
        "-t registry.example.com/churn-model:v1aaaa",
        "docker push registry.example.com/churn-model:v1aaaa",
        "docker image inspect registry.example.com/churn-model:v1aaaa",
        f"kubectl apply -f {folder} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    ]
    assert sorted(p.name for p in folder.iterdir()) == [
        "commands.sh",
        "deployment.yaml",
        "hpa.yaml",
        "service.yaml",
    ]
    files = kubernetes_manifests.FILES
    kubernetes_manifests.validate([yaml.safe_load((folder / f).read_text()) for f in files])
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


def test_a_real_run_calls_containerize_push_inspect_apply_and_rollout_status_in_order(
    tmp_path, tools
):
    calls, _ = tools
    environment = load(production(tmp_path))

    results = kubernetes.replace(Paths(tmp_path), environment, V1, None, checked)

    folder = tmp_path / ".state" / "kubernetes" / "production" / "v1aaaa"
    assert calls() == [
        "bentoml containerize churn_model_service:v1aaaa "
        "-t registry.example.com/churn-model:v1aaaa",
        "docker push registry.example.com/churn-model:v1aaaa",
        "docker image inspect registry.example.com/churn-model:v1aaaa",
        f"kubectl apply -f {folder} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    ]
    assert results["health"] == {"passed": True}
    assert results["kubernetes"]["serving"] == V1["bento"]


def test_the_applied_deployment_names_the_pushed_digest_and_the_results_keep_it(tmp_path, tools):
    results = kubernetes.replace(Paths(tmp_path), load(production(tmp_path)), V1, None, checked)

    digest = fake_digest("v1aaaa")
    applied = yaml.safe_load(
        (tmp_path / ".state/kubernetes/production/v1aaaa/deployment.yaml").read_text()
    )
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPOSITORY}@{digest}"
    assert results["kubernetes"]["digest"] == digest
    assert results["kubernetes"]["image"] == f"{REPOSITORY}@{digest}"
    assert results["kubernetes"]["tag"] == f"{REPOSITORY}:v1aaaa"


def inspected(*digests: str):
    """A runner answering `docker image inspect` with these RepoDigests, the rest silently."""

    def runner(command) -> str:
        if command[:3] == ["docker", "image", "inspect"]:
            return json.dumps([{"RepoTags": [command[3]], "RepoDigests": list(digests)}])
        return ""

    return runner


def test_the_digest_is_the_one_of_the_environments_repository_not_simply_the_first(tmp_path):
    environment, mine = load(production(tmp_path)), fake_digest("mine")
    runner = inspected(
        f"mirror.example.com/churn-model@{fake_digest('other')}", f"{REPOSITORY}@{mine}"
    )

    assert kubernetes.pushed_digest(environment, V1["bento"], runner) == mine


def test_a_docker_hub_repository_matches_its_short_name_in_repo_digests(tmp_path):
    environment, digest = (
        load(production(tmp_path, image="docker.io/library/churn-model")),
        fake_digest("hub"),
    )

    assert (
        kubernetes.pushed_digest(environment, V1["bento"], inspected(f"churn-model@{digest}"))
        == digest
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([], r"RepoDigests lists no registry\.example\.com/churn-model@sha256:\.\.\. \(\[\]\)$"),
        (
            [f"{REPOSITORY}@sha256:short"],
            r"RepoDigests lists no registry\.example\.com/churn-model@",
        ),
        (None, r"`docker image inspect` answered no list of images$"),
    ],
    ids=["no-digest", "malformed-digest", "not-json"],
)
def test_a_push_whose_digest_cannot_be_read_fails_in_one_line_before_any_kubectl(
    tmp_path, answer, message
):
    calls = []
    answered = inspected(*answer) if answer is not None else (lambda command: "not json")

    def runner(command) -> str:
        calls.append(command)
        return answered(command)

    before = verified(V1, {})
    with pytest.raises(CheckFailed, match=message) as failed:
        kubernetes.replace(Paths(tmp_path), load(production(tmp_path)), V2, before, checked, runner)

    assert str(failed.value).startswith(
        "docker push registry.example.com/churn-model:v2bbbb gave no digest that can be read: "
    )
    assert "\n" not in str(failed.value)
    assert not [command for command in calls if command[0] == "kubectl"]
    assert failed.value.checks["kubernetes"]["serving"] == V1["bento"]


def test_a_failed_inspect_after_the_push_fails_the_deploy_and_touches_no_cluster(tmp_path, tools):
    calls, fail_once = tools
    fail_once("docker", "image")

    with pytest.raises(
        CheckFailed,
        match=r"gave no digest that can be read: `docker image inspect .*` exited 1: error: it failed$",
    ):
        kubernetes.replace(Paths(tmp_path), load(production(tmp_path)), V2, None, checked)

    assert calls()[-1] == "docker image inspect registry.example.com/churn-model:v2bbbb"
    assert not [call for call in calls() if call.startswith("kubectl")]


def test_a_failed_rollout_reapplies_the_previous_manifests_and_fails(tmp_path, tools):
    calls, fail_once = tools
    paths, environment = Paths(tmp_path), load(production(tmp_path))
    first = kubernetes.replace(paths, environment, V1, None, checked)
    before = verified(V1, first)
    fail_once("kubectl", "rollout")

    with pytest.raises(CheckFailed, match="rollout status .* exited 1") as failed:
        kubernetes.replace(paths, environment, V2, before, checked)

    state = tmp_path / ".state" / "kubernetes" / "production"
    assert calls()[5:] == [
        "bentoml containerize churn_model_service:v2bbbb "
        "-t registry.example.com/churn-model:v2bbbb",
        "docker push registry.example.com/churn-model:v2bbbb",
        "docker image inspect registry.example.com/churn-model:v2bbbb",
        f"kubectl apply -f {state / 'v2bbbb'} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
        f"kubectl apply -f {state / 'v1aaaa'} -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    ]
    assert failed.value.checks["kubernetes"]["serving"] == V1["bento"]


def test_a_failed_check_after_the_rollout_also_restores_the_previous_bento(tmp_path, tools):
    calls, _ = tools
    paths, environment = Paths(tmp_path), load(production(tmp_path))
    before = verified(V1, {})

    def smoke_fails(url: str, full: bool) -> dict:
        raise CheckFailed("smoke: does not answer like the model", {"smoke": {"passed": False}})

    with pytest.raises(CheckFailed, match="smoke") as failed:
        kubernetes.replace(paths, environment, V2, before, smoke_fails)

    # No manifests were kept for v1: they are rendered again from its record.
    v1 = tmp_path / ".state" / "kubernetes" / "production" / "v1aaaa"
    assert calls()[-2] == f"kubectl apply -f {v1} -n ml-prod"
    assert failed.value.checks["smoke"] == {"passed": False}
    assert failed.value.checks["kubernetes"]["serving"] == V1["bento"]


def test_a_restore_renders_the_previous_bento_again_at_the_digest_its_record_keeps(tmp_path, tools):
    calls, fail_once = tools
    paths, environment = Paths(tmp_path), load(production(tmp_path))
    ran = fake_digest("ran-before")
    before = verified(V1, {"kubernetes": {"digest": ran}})
    fail_once("kubectl", "rollout")

    with pytest.raises(CheckFailed, match="rollout status"):
        kubernetes.replace(paths, environment, V2, before, checked)

    v1 = tmp_path / ".state" / "kubernetes" / "production" / "v1aaaa"
    restored = yaml.safe_load((v1 / "deployment.yaml").read_text())
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPOSITORY}@{ran}"
    assert calls()[-2] == f"kubectl apply -f {v1} -n ml-prod"


def test_kept_manifests_rewritten_since_by_a_failed_redeploy_are_not_what_is_restored(
    tmp_path, tools
):
    calls, fail_once = tools
    paths, environment = Paths(tmp_path), load(production(tmp_path))
    first = kubernetes.replace(paths, environment, V1, None, checked)
    before = verified(V1, first)
    kept = tmp_path / ".state" / "kubernetes" / "production" / "v1aaaa" / "deployment.yaml"
    # The same bento built again is another image: its deploy rewrites v1's folder, then fails.
    rebuilt = yaml.safe_load(kept.read_text())
    rebuilt["spec"]["template"]["spec"]["containers"][0]["image"] = (
        f"{REPOSITORY}@{fake_digest('rebuilt')}"
    )
    kept.write_text(yaml.safe_dump(rebuilt))
    fail_once("kubectl", "rollout")

    with pytest.raises(CheckFailed):
        kubernetes.replace(paths, environment, V2, before, checked)

    restored = yaml.safe_load(kept.read_text())
    assert (
        restored["spec"]["template"]["spec"]["containers"][0]["image"]
        == first["kubernetes"]["image"]
    )


def test_a_failed_push_touches_no_cluster(tmp_path, tools):
    calls, fail_once = tools
    fail_once("docker", "push")

    with pytest.raises(CheckFailed, match="docker push .* exited 1: error: it failed"):
        kubernetes.replace(Paths(tmp_path), load(production(tmp_path)), V2, None, checked)

    assert not [call for call in calls() if call.startswith("kubectl")]


@pytest.mark.parametrize(
    ("fails", "restored", "serving"),
    [
        ("rollout", True, "unknown (kubectl rollout undo)"),
        ("apply", False, "an unknown state (kubectl apply failed; no manifests to re-apply)"),
    ],
)
def test_after_a_kubectl_undo_record_a_failed_rollout_is_undone_in_the_cluster(
    tmp_path, tools, fails, restored, serving
):
    calls, fail_once = tools
    before = verified({"bento": "unknown (kubectl rollout undo)"}, {})
    fail_once("kubectl", fails)

    with pytest.raises(CheckFailed) as failed:
        kubernetes.replace(Paths(tmp_path), load(production(tmp_path)), V2, before, checked)

    undone = [
        "kubectl rollout undo deployment/churn-model -n ml-prod",
        "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    ]
    assert (calls()[-2:] == undone) is restored
    assert failed.value.checks["kubernetes"]["serving"] == serving


def test_a_missing_tool_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(kubernetes.CommandFailed, match="kubectl is not installed"):
        kubernetes.run(["kubectl", "version"])


UNDO = [
    "kubectl rollout undo deployment/churn-model -n ml-prod",
    "kubectl rollout status deployment/churn-model --timeout=120s -n ml-prod",
    "kubectl get deployment/churn-model -o json -n ml-prod",
]


def answering(deployment: dict, calls: list[str]):
    """A runner logging each command, answering `kubectl get` with `deployment` as JSON."""

    def runner(command) -> str:
        calls.append(" ".join(command))
        return json.dumps(deployment) if command[1] == "get" else ""

    return runner


def test_undo_rolls_back_in_the_cluster_and_reports_what_the_pods_now_run(tmp_path):
    environment, calls = load(production(tmp_path)), []
    [deployment, *_] = kubernetes_manifests.render(environment, V1, fake_digest("v1aaaa"))
    answered = []

    def health(url: str) -> dict:
        answered.append(url)
        return {"passed": True, "detail": "/readyz answered 200"}

    results = kubernetes.undo(environment, health, answering(deployment, calls))

    assert calls == UNDO
    assert results["kubernetes"]["commands"] == UNDO
    assert results["kubernetes"]["serving"] == V1["bento"]
    assert results["kubernetes"]["image"] == f"{REPOSITORY}@{fake_digest('v1aaaa')}"
    assert results["health"]["passed"] and answered == ["https://churn.example.com"]


def test_undo_names_an_unknown_bento_when_the_cluster_does_not_say(tmp_path, tools):
    calls, _ = tools
    healthy = {"passed": True, "detail": "/readyz answered 200"}

    results = kubernetes.undo(load(production(tmp_path)), lambda url: healthy)

    assert calls() == UNDO
    assert results["kubernetes"]["serving"] == "unknown (kubectl rollout undo)"


@pytest.mark.parametrize(
    ("fails", "serving"),
    [
        ("rollout", "what it served before (the undo failed)"),
        ("health", "unknown (kubectl rollout undo)"),
    ],
)
def test_a_failed_undo_or_an_unhealthy_url_after_it_fails_naming_what_serves(
    tmp_path, tools, fails, serving
):
    calls, fail_once = tools
    if fails == "rollout":
        fail_once("kubectl", "rollout")
    answer = {"passed": fails != "health", "detail": "/readyz answered 503"}

    with pytest.raises(
        CheckFailed,
        match="rollout undo .* exited 1" if fails == "rollout" else "health: /readyz answered 503",
    ) as failed:
        kubernetes.undo(load(production(tmp_path)), lambda url: answer)

    assert failed.value.checks["kubernetes"]["serving"] == serving
    assert calls() == (UNDO[:1] if fails == "rollout" else UNDO)


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store) -> Paths:
    """A project whose release store is a fresh MLflow SQLite file: no deploy records."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty_store(tmp_path)}")
    return Paths(tmp_path)


def alone(file, **deploy) -> None:
    """The environment file, requiring no other environment (and with `deploy` if given)."""
    document = yaml.safe_load(file.read_text())
    document["requires"] = None
    document["deploy"] = deploy or document["deploy"]
    file.write_text(yaml.safe_dump(document))


def test_a_local_environment_with_no_previous_record_refuses_a_rollback(store):
    alone(production(store.root), target="local", port=3003)

    with pytest.raises(
        engine.Refused, match="^production has no previously verified bento to roll back to$"
    ):
        engine.rollback(None, store, "production")


def test_a_dry_run_rollback_with_no_previous_record_plans_the_undo_and_runs_nothing(
    store, tools, monkeypatch
):
    calls, _ = tools
    alone(production(store.root))
    monkeypatch.setenv("KUBERNETES_DRY_RUN", "1")

    plan = engine.rollback(None, store, "production")

    assert plan.action == "dry-run" and plan.commands == UNDO
    assert calls() == []
    assert records.read(store, "production") == []
