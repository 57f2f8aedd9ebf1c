"""Load test a running service with locust (headless) against an environment's gates.

Locust runs in a subprocess (it monkey-patches the standard library with gevent) and
writes CSV and HTML reports; the aggregated CSV row becomes RPS, p50/p95/p99 and errors.
The measured seconds start at the service's first answer (locustfile.py says why); a
service that answers nothing within FIRST_ANSWER_TIMEOUT seconds fails the load test.
"""

from __future__ import annotations

import csv
import json
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


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def parse_stats(stats_csv: Path) -> dict[str, Any]:
    """RPS, latency percentiles (ms) and error counts from locust's aggregated row."""
    with open(stats_csv, newline="", encoding="utf-8") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows.get("Aggregated")
    if total is None:
        raise RuntimeError(f"{stats_csv}: no Aggregated row; locust sent no requests")
    requests = int(_number(total["Request Count"]))
    errors = int(_number(total["Failure Count"]))
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 1.0,
        "rps": _number(total["Requests/s"]),
        "p50_ms": _number(total["50%"]),
        "p95_ms": _number(total["95%"]),
        "p99_ms": _number(total["99%"]),
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

    `record` is the request body's one record (default: a held-out row for models/).
    """
    gates = environment.gates
    folder = report_dir(paths, environment.name)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / "locust"
    for old in folder.glob("locust*"):
        old.unlink()
    users, seconds = gates.load_test.users, gates.load_test.seconds
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", url.rstrip("/"), "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{FIRST_ANSWER_TIMEOUT + seconds}s", "--stop-timeout", str(STOP_TIMEOUT),
        "--only-summary",
        "--csv", str(prefix), "--html", str(folder / "report.html"), "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {
        **os.environ,
        "LOADTEST_RECORD": json.dumps(record or sample_record(params, paths)),
        "LOADTEST_SECONDS": str(seconds),
    }
    completed = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=FIRST_ANSWER_TIMEOUT + seconds + 120,
    )
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        raise RuntimeError(
            f"locust wrote no statistics (exit code {completed.returncode}):\n"
            + (completed.stderr or completed.stdout)[-3000:]
        )
    measured = parse_stats(stats)
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
