"""The CD engine's deploys interrupted at the worst moments (SIGTERM, kill -9, a full disk,
a death after the switch): what serves, what is recorded, what the next command repairs.
Real `bentoml serve` processes on 127.0.0.1; a module of its own, so xdist runs it beside
test_deploy.py's scenario.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml
from deploys import bento_at

from {{ cookiecutter.package }} import registry, serving
from {{ cookiecutter.package }}.config import PROJECT, Paths
from {{ cookiecutter.package }}.deploy import engine, local, records

pytestmark = pytest.mark.integration


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


@contextmanager
def checking_long(paths: Paths, env: str) -> Iterator[None]:
    """`env` with a load test far longer than the test needs to interrupt a deploy: the
    deploy is surely still checking its candidate when it is stopped, however fast the
    checks would otherwise be done."""
    file = paths.root / "environments" / f"{env}.yaml"
    saved = file.read_text()
    document = yaml.safe_load(saved)
    document["gates"]["load_test"]["seconds"] = 600
    file.write_text(yaml.safe_dump(document))
    try:
        yield
    finally:
        file.write_text(saved)


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
    with checking_long(paths, "test"):
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


# Last: it ends with `down`, so it leaves test serving nothing (a deploy to put the bento
# back would cost the module seconds for no check).
def test_a_deploy_killed_outright_leaves_a_candidate_that_down_finds(
    paths, bento, environments, deployed, second
):
    with checking_long(paths, "test"):
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
