"""Environment files are validated and ordered; the deploy records (MLflow runs in a real
SQLite store) answer what is verified, what serves and what to roll back to."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import yaml

from {{ cookiecutter.package }} import registry, serving
from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy import engine, records, recovery
from {{ cookiecutter.package }}.deploy.environments import load_all
from {{ cookiecutter.package }}.deploy.records import DeployRecord
from {{ cookiecutter.package }}.loadtest import check_gates

pytestmark = pytest.mark.unit


def environment(name: str, requires: str | None, port: int) -> dict:
    return {
        "name": name,
        "requires": requires,
        "promotion": "auto",
        "gates": {"latency_p99_ms": 500, "min_rps": 20, "load_test": {"users": 2, "seconds": 5}},
        "deploy": {"target": "local", "port": port},
    }


def write(root, document: dict) -> None:
    folder = root / "environments"
    folder.mkdir(exist_ok=True)
    (folder / f"{document['name']}.yaml").write_text(yaml.safe_dump(document))


# Ordering, `requires` and the other refusals every consumer shares: test_environment_files.py.
def test_a_bad_field_is_named_with_its_file(tmp_path):
    broken = environment("test", None, 3001)
    broken["gates"]["load_test"]["users"] = 0
    write(tmp_path, broken)

    with pytest.raises(ValueError, match=r"test\.yaml: field gates\.load_test\.users"):
        load_all(Paths(tmp_path))


def test_the_port_offset_shifts_every_environment(tmp_path, monkeypatch):
    write(tmp_path, environment("test", None, 3001))
    monkeypatch.setenv("DEPLOY_PORT_OFFSET", "100")

    assert load_all(Paths(tmp_path))["test"].url == "http://127.0.0.1:3101"


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store) -> Paths:
    """A project whose release store is a fresh MLflow SQLite file."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty_store(tmp_path)}")
    return Paths(tmp_path)


def attempt(paths: Paths, env: str, bento: str) -> DeployRecord:
    """Open a deploy record as the engine does before it checks the candidate."""
    record = DeployRecord(time=records.now(), environment=env, action="deploy", bento=bento)
    return records.start(paths, record)


def deploy(paths: Paths, env: str, bento: str, success: bool = True) -> DeployRecord:
    record = attempt(paths, env, bento)
    loadtest = {"passed": success, "rps": 42.0, "p99_ms": 12.5, "errors": 0}
    record.checks, record.success = {"loadtest": loadtest}, success
    record.error = None if success else "smoke: answers differ"
    return records.finish(paths, record)


def test_only_a_successful_deploy_verifies_a_bento(store):
    deploy(store, "test", "a:1", success=False)
    assert not records.verified(store, "test", "a:1")

    deploy(store, "test", "a:1")
    assert records.verified(store, "test", "a:1")
    assert not records.verified(store, "preprod", "a:1")


def test_the_previous_bento_skips_failures_and_redeploys_of_the_current_one(store):
    for bento, success in [("a:1", True), ("b:2", True), ("c:3", False), ("b:2", True)]:
        deploy(store, "test", bento, success)

    assert records.current(store, "test").bento == "b:2"
    assert records.previous(store, "test").bento == "a:1"
    assert [r.bento for r in records.read(store, "test")] == ["a:1", "b:2", "c:3", "b:2"]


def test_a_deploy_killed_before_its_outcome_stays_visible_and_verifies_nothing(store):
    deploy(store, "test", "a:1")
    attempt(store, "test", "b:2")  # the process died here: no finish()

    last = records.read(store, "test")[-1]
    assert (last.bento, last.status, last.success) == ("b:2", "RUNNING", False)
    assert records.current(store, "test").bento == "a:1"
    assert not records.verified(store, "test", "b:2")
    write(store.root, environment("test", None, 3001))
    text = engine.format_status(engine.status(store))
    assert "test: last deploy of b:2 started at" in text
    assert "recorded no outcome (still running, or killed)" in text


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_a_deploy_that_died_before_its_switch_is_settled_as_failed_by_the_next_status(store):
    deploy(store, "test", "a:1")
    record = attempt(store, "test", "b:2")
    fields = {"process": f"{socket.gethostname()}:{dead_pid()}", "phase": "switching"}
    for key, value in fields.items():
        registry.client(store).set_tag(record.run_id, key, value)
    write(store.root, environment("test", None, serving.free_port()))

    engine.status(store)

    last = records.read(store, "test")[-1]
    assert (last.bento, last.status, last.phase) == ("b:2", "FAILED", "recovered")
    assert last.error == ("interrupted before it recorded its outcome; test then served nothing")
    assert records.current(store, "test").bento == "a:1"


@pytest.mark.parametrize(
    "process",
    [f"{socket.gethostname()}:{os.getppid()}", "another-host:1"],
    ids=["a live process here", "a process on another host"],
)
def test_a_deploy_that_may_still_run_is_left_running(store, process):
    record = attempt(store, "test", "b:2")
    registry.client(store).set_tag(record.run_id, "process", process)
    write(store.root, environment("test", None, serving.free_port()))

    assert recovery.reconcile(store) == []
    assert records.read(store, "test")[-1].status == "RUNNING"


@pytest.mark.parametrize("sole_job_of", ["test", "preprod"])
def test_the_ci_job_that_alone_deploys_an_environment_settles_its_records_from_any_host(
    store, monkeypatch, sole_job_of
):
    deploy(store, "test", "a:1")
    record = attempt(store, "test", "b:2")  # its job was cancelled on a runner now gone
    registry.client(store).set_tag(record.run_id, "process", "a-runner-gone:4242")
    write(store.root, environment("test", None, serving.free_port()))
    monkeypatch.setenv(records.SOLE_DEPLOYER_VARIABLE, sole_job_of)

    settled = recovery.reconcile(store)

    last = records.read(store, "test")[-1]
    if sole_job_of == "test":
        assert [r.run_id for r in settled] == [record.run_id]
        assert (last.status, last.phase) == ("FAILED", "recovered")
        assert last.error == (
            "interrupted before it recorded its outcome; test then served nothing"
        )
    else:  # another environment's job: the deploy may still run elsewhere
        assert settled == [] and last.status == "RUNNING"
    assert records.current(store, "test").bento == "a:1"


def test_a_record_is_an_mlflow_run_with_its_fields_checks_and_figures(store):
    failed = deploy(store, "preprod", "a:1", success=False)

    run = registry.client(store).get_run(failed.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["environment"] == "preprod"
    assert run.data.tags["error"] == "smoke: answers differ"
    assert run.data.metrics["loadtest_p99_ms"] == 12.5
    [read] = records.read(store, "preprod")
    assert read.checks["loadtest"]["rps"] == 42.0 and read.success is False


def test_every_missed_load_test_gate_is_named_with_its_measure():
    measured = {"requests": 100, "errors": 2, "rps": 12.5, "p99_ms": 640.0}

    failures = check_gates(measured, latency_p99_ms=500, min_rps=20)

    assert failures == [
        "errors: 2 of 100 requests failed (the gate allows none)",
        "latency_p99_ms: measured p99 640 ms > 500 ms",
        "min_rps: measured 12.5 requests/s < 20",
    ]


def test_a_record_stored_by_the_previous_shape_still_reads(store):
    # The tags a deploy wrote before records were typed: every field a string, a bento
    # without a model version labelled "None", the smoke result without its URL.
    smoke = {"passed": True, "rows": 5, "max_abs_diff": 0.0, "serving": "a:1"}
    tags = {
        "time": "2026-01-02T03:04:05.000000+00:00", "environment": "test", "action": "deploy",
        "bento": "a:1", "model_version": "None", "git_commit": "abc", "actor": "ci",
        "target": "local", "url": "http://127.0.0.1:3001", "process": "h:1",
        "phase": "finished", "checks": json.dumps({"smoke": smoke}), "success": "true",
    }  # fmt: skip
    client = registry.client(store)
    run = client.create_run(registry.setup_experiment(store, records.EXPERIMENT), tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")

    [read] = records.read(store, "test")

    assert (read.bento, read.success, read.status) == ("a:1", True, "FINISHED")
    assert read.model_version is None and read.previous_bento is None
    assert read.checks["smoke"] == smoke
    assert records.current(store, "test") == read
    assert not records.retag(store, read)  # no version to alias


def test_a_deploy_report_reads_back_in_the_job_summary(store):
    from {{ cookiecutter.package }} import summary

    record = deploy(store, "test", "a:1", success=False)
    recovery.report(store, record)

    written = (store.reports / "deploys" / "test.json").read_text()
    assert DeployRecord.model_validate_json(written) == record
    assert "| test | deploy | a:1 |" in summary.render(store)
    assert "**FAIL**: smoke: answers differ" in summary.render(store)
