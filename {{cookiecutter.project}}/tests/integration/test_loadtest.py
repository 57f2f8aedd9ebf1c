"""The load test's measured window against small loopback servers: a service slow to give
its first answer is measured from that answer on; one that never answers fails the gate."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from {{ cookiecutter.package }} import loadtest
from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy.environments import Environment

pytestmark = pytest.mark.integration

SECONDS = 1
# Short here (5 s in a deploy): locust waits this long for the requests a silent service
# never answers.
STOP_TIMEOUT = 1
# Longer than locust's old whole run (SECONDS of run time and the stop timeout): a first
# answer this late left the window without a single measured request.
FIRST_ANSWER_DELAY = SECONDS + STOP_TIMEOUT + 2


@pytest.fixture(autouse=True)
def short_stop(monkeypatch):
    monkeypatch.setattr(loadtest, "STOP_TIMEOUT", STOP_TIMEOUT)


def environment(name: str = "test") -> Environment:
    return Environment.model_validate(
        {
            "name": name,
            "requires": None,
            "promotion": "auto",
            "approval": None,
            "gates": {
                "latency_p99_ms": 5_000,
                "min_rps": 1,
                "load_test": {"users": 1, "seconds": SECONDS},
            },
            "deploy": {"target": "local", "port": 3001},
        }
    )


class SlowToStart(BaseHTTPRequestHandler):
    """Answers every POST at once, except the server's first, which waits."""

    first = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.first.acquire(blocking=False):
            time.sleep(FIRST_ANSWER_DELAY)
        body = json.dumps({"predictions": [0]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


class AtOnce(SlowToStart):
    """Answers every POST at once."""

    first = threading.Lock()
    first.acquire()


@contextmanager
def slow_to_start_server(handler: type[BaseHTTPRequestHandler] = SlowToStart) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_window_starts_at_the_first_answer_of_a_service_slow_to_start(tmp_path):
    with slow_to_start_server() as url:
        result = loadtest.run(None, Paths(tmp_path), url, environment(), {"x": 1.0})

    assert result["passed"], result["failures"]
    assert result["requests"] > 0 and result["errors"] == 0
    # The slow first answer was the warm-up: it is not in the measured latencies.
    assert result["p99_ms"] < FIRST_ANSWER_DELAY * 1000 / 2


def test_a_window_shorter_than_a_second_is_measured_whole(tmp_path):
    # locust refreshes its CSV once a second, not at exit: read from it, this window
    # measured no request at all.
    short = environment()
    short.gates.load_test.seconds = 0.3
    with slow_to_start_server(AtOnce) as url:
        result = loadtest.run(None, Paths(tmp_path), url, short, {"x": 1.0})

    assert result["passed"], result["failures"]
    assert result["requests"] > 0 and result["errors"] == 0
    assert result["seconds"] == 0.3
    # The count and the rate describe the same window.
    assert result["requests"] == pytest.approx(result["rps"] * 0.3, rel=0.5)


def test_a_service_that_never_answers_fails_naming_the_requests(tmp_path, monkeypatch):
    monkeypatch.setattr(loadtest, "FIRST_ANSWER_TIMEOUT", 1)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = loadtest.run(None, Paths(tmp_path), url, environment(), {"x": 1.0})

    assert not result["passed"]
    assert result["requests"] == 0
    assert "requests: the service answered no request of the load test" in result["failures"]
