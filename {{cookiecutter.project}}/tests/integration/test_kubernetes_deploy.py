"""The CD engine on the kubernetes target, up to the boundary: no Docker, no cluster.

Stand-in `bentoml`, `docker` and `kubectl` scripts log what the engine runs; the
environment's URL is a real `bentoml serve` of the bento on 127.0.0.1, standing in for
the cluster's Service, so health, smoke and load-test checks run for real against it.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy import engine, kubernetes_manifests, records, recovery
from {{ cookiecutter.package }}.deploy.records import DeployRecord

pytestmark = pytest.mark.integration

NAME = "cluster"
REPOSITORY = "registry.example.com/churn-model"


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
            # Enough to see the load test run: its window starts at the first answer.
            "load_test": {"users": 1, "seconds": 1},
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


def fake_digest(version: str) -> str:
    """The digest the stand-in docker gives the image tagged `version` (tests/conftest.py)."""
    return "sha256:" + version.encode().hex().ljust(64, "0")


def undo_commands() -> list[str]:
    deployment = f"deployment/{kubernetes_manifests.app_name()}"
    return [
        f"kubectl rollout undo {deployment} -n ml-test",
        f"kubectl rollout status {deployment} --timeout=300s -n ml-test",
        f"kubectl get {deployment} -o json -n ml-test",
    ]


def test_a_dry_run_only_plans_and_records_nothing(params, paths, bento, cluster, monkeypatch):
    _, log = cluster
    monkeypatch.setenv("KUBERNETES_DRY_RUN", "1")

    plan = engine.deploy(params, paths, NAME, bento["tag"])

    assert plan.action == "dry-run"
    assert [command.split()[:2] for command in plan.commands] == [
        ["bentoml", "containerize"],
        ["docker", "push"],
        ["docker", "image"],
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
    ]
    assert (paths.reports / "deploy" / NAME / "deployment.yaml").exists()
    assert not log.exists() and mine(paths) == []


def test_a_dry_run_rollback_without_records_only_plans_the_undo(
    params, paths, cluster, monkeypatch
):
    _, log = cluster
    monkeypatch.setenv("KUBERNETES_DRY_RUN", "1")

    plan = engine.rollback(params, paths, NAME)

    assert (plan.action, plan.commands) == ("dry-run", undo_commands())
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
        ["docker", "image"],
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
    ]
    assert f"docker push {REPOSITORY}:{version}" in log.read_text()
    assert record.success and record.target == "kubernetes"
    assert record.checks["smoke"]["passed"] and record.checks["loadtest"]["passed"]
    # Deployed by digest, and the record in the release store keeps it.
    digest = fake_digest(version)
    assert record.checks["kubernetes"]["digest"] == digest
    applied = Path(record.checks["kubernetes"]["manifests"]) / "deployment.yaml"
    pod = yaml.safe_load(applied.read_text())["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"{REPOSITORY}@{digest}"
    assert mine(paths)[-1] == record


def test_a_failed_rollout_reapplies_the_previous_record_and_fails(params, paths, bento, cluster):
    tools, log = cluster
    previous = mine(paths)[-1]
    (tools / "fail-kubectl-rollout").touch()
    log.unlink()

    with pytest.raises(engine.DeployFailed, match=f"still serves {previous.bento}: .*rollout"):
        engine.deploy(params, paths, NAME, bento["tag"])

    calls = log.read_text().splitlines()
    assert [line.split()[:2] for line in calls[3:]] == [
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
    ]
    assert previous.checks["kubernetes"]["manifests"] in calls[5]
    assert not mine(paths)[-1].success


def test_a_failed_undo_is_recorded_and_names_what_still_serves(params, paths, bento, cluster):
    tools, log = cluster
    assert records.previous(paths, NAME) is None  # one bento only was ever verified here
    (tools / "fail-kubectl-rollout").touch()
    log.unlink()

    with pytest.raises(engine.DeployFailed, match="serves what it served before .*rollout undo"):
        engine.rollback(params, paths, NAME)

    assert log.read_text().splitlines() == undo_commands()[:1]
    failed = mine(paths)[-1]
    assert (failed.action, failed.bento, failed.success) == (
        "rollback",
        "unknown (kubectl rollout undo)",
        False,
    )
    assert "rollout undo" in failed.error


def test_a_rollback_without_a_previous_record_undoes_the_rollout_and_is_recorded(
    params, paths, bento, cluster
):
    _, log = cluster
    log.unlink()

    record = engine.rollback(params, paths, NAME)

    assert log.read_text().splitlines() == undo_commands()
    assert (record.action, record.bento, record.success) == (
        "rollback",
        "unknown (kubectl rollout undo)",
        True,
    )
    assert (record.target, record.previous_bento) == ("kubernetes", bento["tag"])
    assert record.checks["kubernetes"]["commands"] == undo_commands()
    # The stand-in kubectl reports nothing about what the pods run now.
    assert record.checks["kubernetes"]["serving"] == "unknown (kubectl rollout undo)"
    assert record.checks["health"]["passed"]
    assert mine(paths)[-1] == record and record.status == "FINISHED"


def test_the_next_rollback_redeploys_the_last_recorded_bento(params, paths, bento, cluster):
    _, log = cluster
    log.unlink()

    record = engine.rollback(params, paths, NAME)

    assert (record.action, record.bento, record.success) == (
        "rollback",
        bento["tag"],
        True,
    )
    assert record.previous_bento == "unknown (kubectl rollout undo)"
    assert [line.split()[:2] for line in log.read_text().splitlines()][-2:] == [
        ["kubectl", "apply"],
        ["kubectl", "rollout"],
    ]


def cut_short(paths: Paths, bento: str, phase: str) -> DeployRecord:
    """A deploy's record as a CI job left it when it was cancelled on a runner now gone."""
    record = DeployRecord(
        time=records.now(), environment=NAME, action="deploy", bento=bento,
        target="kubernetes", process="a-runner-gone:4242", phase=phase,
    )  # fmt: skip
    return records.start(paths, record)


def cluster_runs(tools: Path, bento: str) -> None:
    """What the stand-in `kubectl get deployment -o json` reports the pods run."""
    template = {
        "metadata": {"annotations": {"bento-tag": bento}},
        "spec": {"containers": [{"image": f"{REPOSITORY}@{fake_digest('x')}"}]},
    }
    (tools / "answer-kubectl-get").write_text(json.dumps({"spec": {"template": template}}))


def test_a_deploy_cut_short_during_its_checks_is_put_back_by_the_next_ci_job(
    paths, bento, cluster, monkeypatch
):
    tools, log = cluster
    verified = records.current(paths, NAME)
    killed = cut_short(paths, "churn-model:unchecked", phase="checking")
    cluster_runs(tools, "churn-model:unchecked")
    log.unlink()

    # Outside the CI job that alone deploys this environment, a record from another machine
    # may belong to a deploy still running: it is left alone.
    assert recovery.reconcile(paths) == []
    monkeypatch.setenv(records.SOLE_DEPLOYER_VARIABLE, NAME)
    # The cluster cannot be read: nothing is settled or changed yet.
    (tools / "fail-kubectl-get").touch()
    assert recovery.reconcile(paths) == []
    assert records.read(paths, NAME)[-1].status == "RUNNING"

    [settled] = recovery.reconcile(paths)

    assert settled.run_id == killed.run_id
    assert (settled.status, settled.phase, settled.success) == (
        "FAILED", "recovered", False,
    )  # fmt: skip
    assert settled.error == (
        f"interrupted before it recorded its outcome; {NAME} then served churn-model:unchecked "
        f"(its unchecked rollout); put back: {NAME} serves {verified.bento}"
    )
    calls = log.read_text().splitlines()
    assert calls[-3:] == [
        undo_commands()[2],
        f"kubectl apply -f {verified.checks['kubernetes']['manifests']} -n ml-test",
        undo_commands()[1],
    ]
    assert records.current(paths, NAME).run_id == verified.run_id


def test_a_deploy_cut_short_after_its_checks_passed_is_recorded_as_verified(
    paths, bento, cluster, monkeypatch
):
    tools, log = cluster
    monkeypatch.setenv(records.SOLE_DEPLOYER_VARIABLE, NAME)
    passed = cut_short(paths, bento["tag"], phase="switching")
    cluster_runs(tools, bento["tag"])
    log.unlink()

    [settled] = recovery.reconcile(paths)

    assert settled.run_id == passed.run_id
    assert (settled.status, settled.success, settled.error) == ("FINISHED", True, None)
    # Only read: nothing is applied again.
    assert log.read_text().splitlines() == [undo_commands()[2]]
    assert records.current(paths, NAME).run_id == passed.run_id


def test_a_rollout_whose_record_cannot_be_written_is_undone(
    params, paths, bento, cluster, monkeypatch
):
    _, log = cluster
    # What the cluster ran before (the stand-in's URL serves only `bento`, so the one put
    # back is another tag, recorded as verified).
    older = cut_short(paths, "churn-model:older", "switching")
    older = records.finish(paths, older.model_copy(update={"success": True}))
    finish = records.finish

    def full_disk(store, record):  # the write that records the rollout's success fails
        if record.success:
            raise OSError(errno.ENOSPC, "No space left on device")
        return finish(store, record)

    monkeypatch.setattr(records, "finish", full_disk)
    log.unlink()

    with pytest.raises(engine.DeployFailed) as failed:
        engine.deploy(params, paths, NAME, bento["tag"])

    assert f"{NAME} still serves {older.bento}: the outcome could not be recorded" in str(
        failed.value
    )
    calls = log.read_text().splitlines()
    assert [line.split()[:2] for line in calls[:5]] == [
        ["bentoml", "containerize"], ["docker", "push"], ["docker", "image"],
        ["kubectl", "apply"], ["kubectl", "rollout"],
    ]  # fmt: skip
    assert calls[5:] == undo_commands()
    last = records.read(paths, NAME)[-1]
    assert (last.bento, last.status) == (bento["tag"], "FAILED")
    assert "No space left on device" in last.error
    assert records.current(paths, NAME).run_id == older.run_id
