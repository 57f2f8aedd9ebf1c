"""A server's state file outlives its processes, and pids and ports are reused: `stop`,
`running` and `healthy` act only on the server's own processes (those running with its
own BentoML home), never on another program that has its pid or port since. Real
processes listening on 127.0.0.1; no BentoML needed to tell them apart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package }} import serving
from {{ cookiecutter.package }}.config import Paths

pytestmark = pytest.mark.unit

LISTEN = """
import socket, sys, time
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("listening", flush=True)
time.sleep(120)
"""

Start = Callable[[int, Path], subprocess.Popen[str]]


@pytest.fixture
def listener() -> Iterator[Start]:
    """`start(port, home)`: a process in a session of its own, listening on 127.0.0.1:port,
    with BENTOML_HOME=home; killed at the end if it still runs."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int, home: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", LISTEN, str(port)],
            env={**os.environ, "BENTOML_HOME": str(home)},
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "listening\n"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def recorded(tmp_path: Path, pid: int, port: int) -> serving.Server:
    """The state a server on `port` left."""
    log = serving.log_file(Paths(tmp_path), "test", port)
    return serving.Server(pid, port, "churn-model:old", str(log), time.time())


def home_of(server: serving.Server) -> Path:
    """The BentoML home the server ran with (`serving.start` gives each its own)."""
    return serving._home_of(Path(server.log))


def test_a_stale_record_whose_pid_and_port_another_program_has_is_left_alone(tmp_path, listener):
    port = serving.free_port()
    other = listener(port, tmp_path / "another-home")
    stale = recorded(tmp_path, other.pid, port)

    assert not serving.running(stale)
    assert not serving.healthy(stale)
    serving.stop(stale)

    assert other.poll() is None, "stop signalled a process that is not the server's"
    assert serving.listening(port)


def test_the_servers_own_process_is_stopped_and_its_port_freed(tmp_path, listener):
    port = serving.free_port()
    own = listener(port, home_of(recorded(tmp_path, 0, port)))
    server = recorded(tmp_path, own.pid, port)

    assert serving.running(server)
    serving.stop(server)

    assert own.wait(timeout=10) is not None
    assert not serving.listening(port)


def test_an_orphaned_worker_of_the_server_is_found_by_its_port(tmp_path, listener):
    # Its `bentoml serve` killed (a pid no process has now): the workers, in sessions of
    # their own, keep the port.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    port = serving.free_port()
    worker = listener(port, home_of(recorded(tmp_path, 0, port)))
    server = recorded(tmp_path, int(gone.stdout), port)

    assert not serving.running(server)
    serving.stop(server)

    assert worker.wait(timeout=10) is not None
    assert not serving.listening(port)
