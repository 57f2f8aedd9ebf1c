"""The CD engine on the local target: real `bentoml serve` processes on 127.0.0.1.

One scenario per module (each server start costs seconds): a good bento is deployed to
test, then a broken one is refused, a second one deployed and rolled back, and
everything is stopped. The environments get free ports and a short load test.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from {{ cookiecutter.package }} import loadtest, package, registry, serving, smoke
from {{ cookiecutter.package }}.config import PROJECT, Paths
from {{ cookiecutter.package }}.deploy import engine, local, records
from {{ cookiecutter.package }}.deploy.environments import load_all

pytestmark = pytest.mark.integration


def environment_file(name: str, requires: str | None, port: int) -> dict:
    return {
        "name": name,
        "requires": requires,
        "promotion": "auto",
        "approval": None,
        "gates": {
            "metrics": {},
            # Far from what is measured: this scenario is about deploys, not about speed.
            "latency_p99_ms": 10_000,
            "min_rps": 0.1,
            # One second of load is enough to see the checks run: the window starts at the
            # service's first answer, however long locust takes to start on a busy machine.
            "load_test": {"users": 1, "seconds": 1},
        },
        "deploy": {"target": "local", "port": port},
    }


@pytest.fixture(scope="module")
def environments(paths: Paths):
    """test -> preprod -> production on free ports; every server stopped afterwards."""
    folder = paths.root / "environments"
    saved = {file.name: file.read_text() for file in folder.glob("*.yaml")}
    chain = [("test", None), ("preprod", "test"), ("production", "preprod")]
    for name, requires in chain:
        document = environment_file(name, requires, serving.free_port())
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DEPLOY_PORT_OFFSET", raising=False)
        try:
            yield load_all(paths)
        finally:
            engine.down(paths)
            for name, text in saved.items():
                (folder / name).write_text(text)


def build_from(params, root: Paths, tamper=None) -> str:
    """Another bento of the same registered model version (`root` from the `job_root`
    fixture), its card optionally tampered."""
    if tamper is not None:
        card = json.loads(root.model_card.read_text())
        tamper(card)
        root.model_card.write_text(json.dumps(card))
    return package.build(params, root)["tag"]


def reverse_feature_order(card: dict) -> None:
    # A packaging bug that validation cannot see: same fields, columns in another order.
    card["spec"]["features"] = card["spec"]["features"][::-1]


@pytest.fixture(scope="module")
def second(params, bento, job_root, tmp_path_factory) -> str:
    """Another bento of the same model version, built once for the module: each test that
    deploys it reads only the last record, the served tag and the state it leaves, so one
    build serves them all (a build costs seconds)."""
    return build_from(params, job_root(tmp_path_factory.mktemp("second")))


@pytest.fixture(scope="module")
def deployed(params, paths, bento, environments) -> dict:
    """The first bento, deployed to test and verified there."""
    return engine.deploy(params, paths, "test", bento["tag"])


def bento_at(url: str) -> str:
    response = httpx.post(f"{url}/metadata", json={}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["bento_tag"]


def test_production_refuses_a_bento_not_verified_in_preprod(params, paths, bento, environments):
    with pytest.raises(engine.Refused) as refused:
        engine.deploy(params, paths, "production", bento["tag"])

    assert str(refused.value) == (
        f"bento {bento['tag']} has not been verified in preprod: run make promote ENV=preprod first"
    )
    assert not serving.listening(environments["production"].port)


def test_a_disk_short_of_space_refuses_the_deploy_before_anything_changes(
    params, paths, bento, environments, monkeypatch
):
    monkeypatch.setenv(engine.MIN_FREE_MB_VARIABLE, str(2**40))  # more than any disk here
    attempts = len(records.read(paths, "test"))
    with pytest.raises(engine.Refused, match=r"MB free under .*: a deploy needs 1099511627776 MB"):
        engine.deploy(params, paths, "test", bento["tag"])
    assert not serving.listening(environments["test"].port)
    assert len(records.read(paths, "test")) == attempts


def test_promoting_to_preprod_before_anything_is_verified_in_test_names_the_step(
    params, paths, environments
):
    with pytest.raises(engine.Refused, match="run make deploy ENV=test first"):
        engine.promote(params, paths, "preprod")


def test_a_deploy_passes_its_checks_serves_the_bento_and_is_recorded(
    paths, bento, trained, environments, deployed
):
    assert deployed.success, deployed
    checks = deployed.checks
    assert checks["health"]["passed"] and checks["smoke"]["passed"]
    assert checks["loadtest"]["passed"] and checks["loadtest"]["requests"] > 0
    assert checks["after_switch"]["smoke"]["passed"]
    assert bento_at(environments["test"].url) == bento["tag"]
    assert records.read(paths)[-1] == deployed
    version = registry.client(paths).get_model_version_by_alias(PROJECT, "test")
    assert str(version.version) == str(trained["model_version"])
    assert version.tags["deploy.test.bento"] == bento["tag"]
    [row] = [r for r in engine.status(paths) if r.environment == "test"]
    assert row.healthy and row.running == bento["tag"]
    assert row.record.action == "deploy"


def test_a_bento_failing_its_smoke_check_leaves_the_previous_one_serving(
    params, paths, bento, environments, deployed, job_root, tmp_path
):
    broken = build_from(params, job_root(tmp_path), tamper=reverse_feature_order)

    with pytest.raises(engine.DeployFailed, match="smoke") as failed:
        engine.deploy(params, paths, "test", broken)

    assert f"test still serves {bento['tag']}" in str(failed.value)
    url = environments["test"].url
    assert bento_at(url) == bento["tag"]
    record = smoke.to_records(smoke.held_out_rows(params, paths).head(1), _names(paths))
    assert httpx.post(f"{url}/predict", json={"records": record}, timeout=30).status_code == 200
    last = records.read(paths)[-1]
    assert (last.bento, last.success) == (broken, False)
    assert last.checks["smoke"]["passed"] is False
    [row] = [r for r in engine.status(paths) if r.environment == "test"]
    assert row.healthy and row.running == bento["tag"]
    assert row.last_failure.bento == broken


def _names(paths: Paths) -> list[str]:
    return [f["name"] for f in json.loads(paths.model_card.read_text())["spec"]["features"]]


def test_an_impossible_load_test_gate_fails_naming_the_gate_and_the_measure(
    params, paths, environments, deployed
):
    strict = environments["test"].model_copy(deep=True)
    strict.gates.latency_p99_ms = 0.001
    strict.gates.min_rps = 1_000_000

    result = loadtest.run(params, paths, strict.url, strict)

    assert not result["passed"]
    assert any(f.startswith("latency_p99_ms: measured p99") for f in result["failures"])
    assert any(f.startswith("min_rps: measured") for f in result["failures"])
    reports = loadtest.report_dir(paths, "test")
    assert (reports / "locust_stats.csv").exists() and (reports / "report.html").exists()


def test_rollback_restores_the_previous_bento_as_a_new_record(
    params, paths, bento, environments, deployed, second
):
    engine.deploy(params, paths, "test", second)
    assert bento_at(environments["test"].url) == second
    before = records.read(paths)

    rolled = engine.rollback(params, paths, "test")

    assert (rolled.action, rolled.bento, rolled.success) == (
        "rollback",
        bento["tag"],
        True,
    )
    assert rolled.previous_bento == second
    assert bento_at(environments["test"].url) == bento["tag"]
    after = records.read(paths)
    assert after[: len(before)] == before and after[-1] == rolled
    [row] = [r for r in engine.status(paths) if r.environment == "test"]
    assert (row.running, row.record.action) == (bento["tag"], "rollback")


def start_deploy(env: str, bento: str) -> subprocess.Popen:
    """`deploy` as a person or a CI job runs it: its own process (and process group)."""
    command = [sys.executable, "-m", "{{ cookiecutter.package }}.cli", "deploy", env]
    return subprocess.Popen(
        [*command, "--bento", bento],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_candidate(paths: Paths, env: str, process: subprocess.Popen) -> serving.Server:
    """The candidate server, once it is recorded and listening (the deploy is checking it)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        found = serving.read_state(paths, local.candidate(env))
        if found is not None and serving.listening(found.port):
            return found
        time.sleep(0.2)
    raise AssertionError("the deploy never started its candidate")


def test_a_deploy_stopped_by_sigterm_stops_its_candidate_and_records_the_abort(
    params, paths, bento, environments, deployed, second
):
    process = start_deploy("test", second)
    checked = wait_for_candidate(paths, "test", process)

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)

    assert process.returncode == 1, output
    assert f"test still serves {bento['tag']}: aborted by SIGTERM" in output
    assert not serving.listening(checked.port)
    assert serving.read_state(paths, local.candidate("test")) is None
    last = records.read(paths, "test")[-1]
    assert (last.bento, last.status) == (second, "FAILED")
    assert last.error == "aborted by SIGTERM"
    assert bento_at(environments["test"].url) == bento["tag"]


def test_a_deploy_killed_outright_leaves_a_candidate_that_down_finds(
    params, paths, bento, environments, deployed, second
):
    process = start_deploy("test", second)
    checked = wait_for_candidate(paths, "test", process)

    os.killpg(process.pid, signal.SIGKILL)  # the deploy only: each server has its own group
    process.communicate(timeout=60)

    assert serving.listening(checked.port), "the candidate died with the deploy"
    last = records.read(paths, "test")[-1]
    assert (last.bento, last.status) == (second, "RUNNING")
    assert bento_at(environments["test"].url) == bento["tag"]
    # Its `bentoml serve` killed too: the workers, in sessions of their own, keep the port.
    os.kill(checked.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while serving.alive(checked.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not serving.alive(checked.pid)
    assert serving.listening(checked.port), "the workers died with their `bentoml serve`"
    engine.down(paths, "test")
    settled = records.read(paths, "test")[-1]
    assert (settled.run_id, settled.status) == (last.run_id, "FAILED")
    assert settled.error.startswith("interrupted before it recorded its outcome")
    assert not serving.listening(checked.port)
    assert not serving.listening(environments["test"].port)
    # Serving again for the tests after this one.
    assert engine.deploy(params, paths, "test", bento["tag"]).success


def _full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_record_that_cannot_be_written_after_the_switch_puts_the_old_bento_back(
    params, paths, bento, environments, deployed, second, monkeypatch
):
    finish = records.finish
    # The disk fills between the switch and the write that records the success.
    monkeypatch.setattr(records, "finish", lambda p, r: _full_disk() if r.success else finish(p, r))

    with pytest.raises(engine.DeployFailed) as failed:
        engine.deploy(params, paths, "test", second)

    assert f"test still serves {bento['tag']}" in str(failed.value)
    assert bento_at(environments["test"].url) == bento["tag"]
    assert serving.read_state(paths, "test").bento == bento["tag"]
    assert records.current(paths, "test").bento == bento["tag"]
    last = records.read(paths, "test")[-1]
    assert (last.bento, last.status) == (second, "FAILED")
    assert "No space left on device" in last.error


# A deploy whose process dies (kill -9, a runner lost) at the worst moment: its bento
# serves on the port, and the write that would record it never happens.
KILLED_AT_THE_RECORD = """
import os, signal, sys
from {{ cookiecutter.package }}.cli import _setup
from {{ cookiecutter.package }}.deploy import engine, records

def finish(paths, record):
    os.kill(os.getpid(), signal.SIGKILL)

records.finish = finish
params, paths = _setup()
engine.deploy(params, paths, sys.argv[1], sys.argv[2])
"""


def test_a_deploy_killed_after_the_switch_is_recorded_by_the_next_command(
    params, paths, bento, environments, deployed, second
):
    command = [sys.executable, "-c", KILLED_AT_THE_RECORD, "test", second]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert bento_at(environments["test"].url) == second
    left = records.read(paths, "test")[-1]
    assert (left.bento, left.status) == (second, "RUNNING")

    [row] = [r for r in engine.status(paths) if r.environment == "test"]

    assert (row.running, row.record.bento) == (second, second)
    assert (row.record.run_id, row.record.phase) == (left.run_id, "recovered")
    assert records.current(paths, "test").bento == second
    assert "interrupted before it recorded its outcome" in engine.format_status([row])
    version = registry.client(paths).get_model_version_by_alias(PROJECT, "test")
    assert version.tags["deploy.test.deploy_run"] == left.run_id


def test_aliases_that_cannot_be_tagged_are_tagged_by_the_next_command(
    params, paths, bento, environments, deployed, monkeypatch
):
    with monkeypatch.context() as patch:
        patch.setattr(records, "tag_registry", _full_disk)
        with pytest.raises(engine.Unfinished, match="No space left on device"):
            engine.deploy(params, paths, "test", bento["tag"])
    done = records.read(paths, "test")[-1]
    assert (done.bento, done.success) == (bento["tag"], True)
    assert bento_at(environments["test"].url) == bento["tag"]
    client = registry.client(paths)
    tags = client.get_model_version_by_alias(PROJECT, "test").tags
    assert tags["deploy.test.deploy_run"] != done.run_id

    engine.status(paths)

    tags = client.get_model_version_by_alias(PROJECT, "test").tags
    assert (tags["deploy.test.deploy_run"], tags["deploy.test.bento"]) == (
        done.run_id,
        bento["tag"],
    )


def test_down_stops_every_environment(paths, environments, deployed):
    stopped = engine.down(paths)

    assert "test" in stopped
    for environment in environments.values():
        assert not serving.listening(environment.port)
    assert not any(row.healthy for row in engine.status(paths))
