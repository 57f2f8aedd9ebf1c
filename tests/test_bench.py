"""bench/serving.py: wrk drives a real local server with the request body; the report judges
the targets from the figures it is given."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import load_module

SERVING = Path(__file__).resolve().parents[1] / "bench" / "serving.py"
CI_BENCH = Path(__file__).resolve().parents[1] / "bench" / "ci.py"


def load(name: str, path: Path):
    """A bench script as a module (bench/ is scripts, not a package)."""
    return load_module(name, path)


@pytest.fixture(scope="module")
def serving():
    return load("bench_serving", SERVING)


@pytest.fixture(scope="module")
def ci_bench():
    return load("bench_ci", CI_BENCH)


@pytest.fixture
def echo_server():
    """Answers 200 to a JSON POST carrying the expected body, 422 to anything else."""
    seen: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["Content-Type"], body))
            ok = self.headers["Content-Type"] == "application/json" and json.loads(body)
            self.send_response(200 if ok == {"records": [{"x": 1.5}]} else 422)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/predict", seen
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_posts_the_body_and_reports_figures(serving, echo_server, tmp_path):
    url, seen = echo_server
    script = tmp_path / "post.lua"
    script.write_text(serving.WRK_SCRIPT % json.dumps({"records": [{"x": 1.5}]}))

    figures = serving.wrk(url, script, connections=2, seconds=1)

    assert figures["rps"] > 0
    assert figures["non_2xx"] == 0 and figures["socket_errors"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert seen and all(request == seen[0] for request in seen)


def test_the_report_passes_and_misses_each_target(serving):
    def point(rps, p99, failed=0):
        return {"rps": rps, "p50_ms": 1.0, "p99_ms": p99, "non_2xx": failed, "socket_errors": 0}

    results = {
        1: {"bento": point(700, 3), "bare": point(1000, 2)},
        8: {"bento": point(500, 30), "bare": point(1000, 9)},
        32: {"bento": point(650, 60, failed=2), "bare": point(1000, 40)},
    }
    results[32]["runs"] = {"bento": [point(650, 60), point(640, 70, failed=2)]}

    lines = serving.report(results, runs=2, duration=5)

    assert "1: 0.70 PASS, 8: 0.50 MISS, 32: 0.65 PASS" in lines[-3]
    assert lines[-2].endswith("30.0 ms MISS")
    assert lines[-1].endswith("2 in the worst run MISS")


def test_the_report_gives_the_cost_of_logging_predictions(serving):
    def point(rps, p99):
        return {"rps": rps, "p50_ms": 1.0, "p99_ms": p99, "non_2xx": 0, "socket_errors": 0}

    results = {
        1: {"bento": point(850, 1.0), "bare": point(1000, 0.8), "unlogged": point(1000, 0.9)},
        8: {"bento": point(900, 12.0), "bare": point(1200, 5.0), "unlogged": point(960, 10.0)},
    }

    lines = serving.report(results, runs=1, duration=5)

    assert lines[-3].startswith("prediction logging")
    assert lines[-2] == "    1 conns:    850 vs   1000 req/s (-15.0%), p99 1.0 vs 0.9 ms"
    assert lines[-1] == "    8 conns:    900 vs    960 req/s (-6.2%), p99 12.0 vs 10.0 ms"


def test_the_critical_path_is_the_longest_chain_of_the_graph(ci_bench):
    jobs = {"lint": 5.0, "unit": 60.0, "data": 30.0, "train": 20.0, "model": 50.0,
            "package": 40.0, "integration": 100.0, "service": 70.0}  # fmt: skip
    needs = {"lint": [], "unit": [], "data": [], "train": ["data"], "model": ["train"],
             "package": ["data", "train"], "integration": ["package"],
             "service": ["data", "train", "package"]}  # fmt: skip

    assert ci_bench.critical_path(jobs, needs) == (
        190.0,
        ["data", "train", "package", "integration"],
    )
    # A slow unit layer becomes the path on its own.
    assert ci_bench.critical_path({**jobs, "unit": 300.0}, needs) == (300.0, ["unit"])


def test_the_ci_report_marks_the_path_and_its_ratio_to_one_runner(ci_bench):
    stages = {"data": 3.0, "train": 9.0}
    jobs = {"data": [30.0], "train": [20.0], "lint": [10.0]}
    needs = {"data": [], "train": ["data"], "lint": []}

    lines = ci_bench.report(stages, 5.0, jobs, needs)

    assert "  total           12.0 s" in lines
    assert lines[-2] == "critical path (*): data -> train = 60.0 s (1.0 min)"
    assert lines[-1] == "serial, one runner: 75.0 s; critical path / serial = 0.80"
    assert [line[0] for line in lines if line.startswith(("*", "  lint"))] == ["*", "*", " "]


def test_a_check_split_over_parallel_jobs_costs_its_slowest_part_on_the_path(ci_bench):
    jobs = {"package": [10.0], "integration": [40.0, 55.0], "service": [30.0]}
    needs = {"package": [], "integration": ["package"], "service": ["package"]}

    lines = ci_bench.report({"data": 1.0}, 5.0, jobs, needs)

    # package 15 + the slower integration part 60; one runner pays every part's install.
    assert lines[-2] == "critical path (*): package -> integration = 75.0 s (1.2 min)"
    assert lines[-1] == "serial, one runner: 155.0 s; critical path / serial = 0.48"
    [integration] = [line for line in lines if line.startswith("* integration")]
    assert integration.endswith("package  (parallel jobs: 40.0 / 55.0)")
    assert "    55.0    60.0" in integration


def test_the_ci_bench_reads_the_check_graph_from_a_baked_project(ci_bench, ci_project, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # it puts the project's src/ first
    try:
        cicd = ci_bench.load_cicd(ci_project)
        names = [job.name for job in cicd.CHECKS]
        train = cicd.CHECKS[names.index("train")]
        assert names[0] == "lint" and "integration" in names and "service" in names
        assert cicd.check_needs(train) == ["data"]
        assert {job.name: job.shards for job in cicd.CHECKS if job.shards > 1} == {"integration": 2}
    finally:  # the project's package leaves with the test
        for name in [name for name in sys.modules if name.partition(".")[0] == "churn_model"]:
            del sys.modules[name]
