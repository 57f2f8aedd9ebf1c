"""The CD engine on the kubernetes target, up to the boundary: no Docker, no cluster.

Stand-in `bentoml`, `docker` and `kubectl` scripts log what the engine runs; the
environment's URL is a real `bentoml serve` of the bento on 127.0.0.1, standing in for
the cluster's Service, so health, smoke and load-test checks run for real against it.
"""

from __future__ import annotations

import os

import pytest
import yaml

from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy import engine, records

pytestmark = pytest.mark.integration

NAME = "cluster"


@pytest.fixture(scope="module")
def cluster(paths: Paths, server: str, tmp_path_factory, stand_in_tools):
    """A kubernetes environment served by `server`, and stand-in tools on PATH."""
    tools = tmp_path_factory.mktemp("tools")
    log = stand_in_tools(tools)
    document = {
        "name": NAME,
        "requires": None,
        "gates": {
            "latency_p99_ms": 10_000,
            "min_rps": 0.1,
            "load_test": {"users": 1, "seconds": 5},
        },
        "deploy": {
            "target": "kubernetes",
            "namespace": "ml-test",
            "replicas": 1,
            "image": "registry.example.com/churn-model",
            "url": server,
            "resources": {"cpu": "500m", "memory": "1Gi"},
            "autoscaling": {"min_replicas": 1, "max_replicas": 3, "cpu_percent": 80},
        },
    }
    file = paths.root / "environments" / f"{NAME}.yaml"
    file.write_text(yaml.safe_dump(document))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
        patch.delenv("KUBERNETES_DRY_RUN", raising=False)
        try:
            yield tools, log
        finally:
            file.unlink()


def mine(paths: Paths) -> list[dict]:
    return records.read(paths, NAME)


def test_a_dry_run_only_plans_and_records_nothing(params, paths, bento, cluster, monkeypatch):
    _, log = cluster
    monkeypatch.setenv("KUBERNETES_DRY_RUN", "1")

    plan = engine.deploy(params, paths, NAME, bento["tag"])

    assert plan["action"] == "dry-run"
    assert [command.split()[:2] for command in plan["commands"]] == [
        ["bentoml", "containerize"],
        ["docker", "push"],
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
    ]
    assert (paths.reports / "deploy" / NAME / "deployment.yaml").exists()
    assert not log.exists() and mine(paths) == []


def test_a_deploy_runs_the_commands_then_checks_the_url_and_is_recorded(
    params, paths, bento, cluster
):
    _, log = cluster

    record = engine.deploy(params, paths, NAME, bento["tag"])

    version = bento["tag"].split(":")[1]
    assert [line.split()[:2] for line in log.read_text().splitlines()] == [
        ["bentoml", "containerize"],
        ["docker", "push"],
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
    ]
    assert f"registry.example.com/churn-model:{version}" in log.read_text()
    assert record["success"] and record["target"] == "kubernetes"
    assert record["checks"]["smoke"]["passed"] and record["checks"]["loadtest"]["passed"]
    assert mine(paths)[-1] == record


def test_a_failed_rollout_reapplies_the_previous_record_and_fails(params, paths, bento, cluster):
    tools, log = cluster
    previous = mine(paths)[-1]
    (tools / "fail-kubectl-rollout").touch()
    log.unlink()

    with pytest.raises(engine.DeployFailed, match=f"still serves {previous['bento']}: .*rollout"):
        engine.deploy(params, paths, NAME, bento["tag"])

    calls = log.read_text().splitlines()
    assert [line.split()[:2] for line in calls[2:]] == [
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
    ]
    assert previous["checks"]["kubernetes"]["manifests"] in calls[4]
    assert not mine(paths)[-1]["success"]
