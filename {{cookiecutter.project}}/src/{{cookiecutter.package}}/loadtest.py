"""Load test a running service with locust (headless) against an environment's gates.

Locust runs in a subprocess (it monkey-patches the standard library with gevent) and
writes CSV and HTML reports; the locustfile writes the measured window's RPS, p50/p95/p99
and errors as it exits, and those are what the gates judge.
The measured seconds start at the service's first answer (locustfile.py says why); a
service that answers nothing within FIRST_ANSWER_TIMEOUT seconds fails the load test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import Params, Paths

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# How long locust may wait for the service's first answer before the measured seconds start.
FIRST_ANSWER_TIMEOUT = 30
# How long requests still in flight when the window ends may take to finish.
STOP_TIMEOUT = 5


def report_dir(paths: Paths, environment: str) -> Path:
    return paths.reports / "loadtest" / environment


def sample_record(params: Params, paths: Paths) -> dict[str, Any]:
    """One held-out record with exactly the model's features."""
    from .model import Model
    from .smoke import held_out_rows, to_records

    model = Model.load(paths.model_file, paths.model_card)
    return to_records(held_out_rows(params, paths).head(1), model.spec.names)[0]


def read_window(result: Path) -> dict[str, Any]:
    """Requests, errors, RPS and latency percentiles (ms) of the measured window, as the
    locustfile wrote them at exit."""
    figures = json.loads(result.read_text())
    requests, errors = int(figures["requests"]), int(figures["errors"])
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 1.0,
        **{key: float(figures[key]) for key in ("rps", "p50_ms", "p95_ms", "p99_ms")},
    }


def check_gates(measured: dict[str, Any], latency_p99_ms: float, min_rps: float) -> list[str]:
    """One message per gate not met, naming the gate and the measured value."""
    failures = []
    if measured["requests"] == 0:
        failures.append("requests: the service answered no request of the load test")
    if measured["errors"] > 0:
        failures.append(
            f"errors: {measured['errors']} of {measured['requests']} requests failed "
            "(the gate allows none)"
        )
    if measured["p99_ms"] > latency_p99_ms:
        failures.append(
            f"latency_p99_ms: measured p99 {measured['p99_ms']:.0f} ms > {latency_p99_ms:g} ms"
        )
    if measured["rps"] < min_rps:
        failures.append(f"min_rps: measured {measured['rps']:.1f} requests/s < {min_rps:g}")
    return failures


def run(
    params: Params,
    paths: Paths,
    url: str,
    # A deploy.environments.Environment: that layer sits above this one, so not imported.
    environment: Any,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load `url` with the users and seconds of `environment`'s gates; judge the result.

    The figures are the locustfile's (LOADTEST_RESULT); the CSV and HTML reports stay for
    people to read.

    `record` is the request body's one record (default: a held-out row for models/).
    """
    gates = environment.gates
    folder = report_dir(paths, environment.name)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / "locust"
    window = folder / "window.json"
    for old in [*folder.glob("locust*"), window]:
        old.unlink(missing_ok=True)
    users, seconds = gates.load_test.users, gates.load_test.seconds
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", url.rstrip("/"), "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{math.ceil(FIRST_ANSWER_TIMEOUT + seconds)}s",
        "--stop-timeout", str(STOP_TIMEOUT),
        "--only-summary",
        "--csv", str(prefix), "--html", str(folder / "report.html"), "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {
        **os.environ,
        "LOADTEST_RECORD": json.dumps(record or sample_record(params, paths)),
        "LOADTEST_SECONDS": str(seconds),
        "LOADTEST_RESULT": str(window),
    }
    completed = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=FIRST_ANSWER_TIMEOUT + seconds + 120,
    )
    if not window.exists():
        raise RuntimeError(
            f"locust wrote no statistics (exit code {completed.returncode}):\n"
            + (completed.stderr or completed.stdout)[-3000:]
        )
    measured = read_window(window)
    failures = check_gates(measured, gates.latency_p99_ms, gates.min_rps)
    result = {
        "url": url,
        "environment": environment.name,
        "users": users,
        "seconds": seconds,
        **measured,
        "gates": {"latency_p99_ms": gates.latency_p99_ms, "min_rps": gates.min_rps, "errors": 0},
        "failures": failures,
        "passed": not failures,
        "reports": str(folder),
    }
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_result(result: dict[str, Any]) -> str:
    return (
        f"load test {result['environment']} ({result['users']} users, {result['seconds']} s) "
        f"at {result['url']}: {result['requests']} requests, {result['rps']:.1f} req/s, "
        f"p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms, errors {result['errors']} "
        f"-> {'pass' if result['passed'] else 'FAIL'}"
    )
