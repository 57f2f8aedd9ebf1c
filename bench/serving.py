"""Serving benchmark: the generated bento against a bare ASGI app on the same booster.

Bakes the default project into build/bench/ (reused while the template is unchanged), runs
its stages up to `make package`, then loads both servers on 127.0.0.1 with wrk at several
concurrencies, interleaving their runs so machine noise hits both alike, and prints medians
and the bento/bare ratio, and what the prediction log costs (the same bento served with
MONITORING_ENABLED=false, in the same interleaved runs). Then runs bench/batch.py (batch
prediction) and bench/drift.py (`make monitor`'s drift tests on a million-row window).

    uv run python bench/serving.py [--runs 3] [--duration 10] [--project DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
BUILD = TEMPLATE / "build" / "bench"
STAGES = ("install", "data", "validate", "train", "evaluate", "package")
# What the bake depends on; a change to any of these means a fresh bake.
TEMPLATE_INPUTS = ("cookiecutter.json", "hooks", "environments", "{{cookiecutter.project}}")
TARGETS = {"ratio": 0.6, "p99_ms_at_8": 25.0, "non_2xx_at_32": 0}

# wrk reports through this Lua: POST the body, then print one JSON line of figures.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "seconds": %%f, "p50_us": %%d, "p99_us": %%d, "non_2xx": %%d, ' ..
    '"socket_errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def project_env() -> dict[str, str]:
    """The environment a user's shell would give the baked project's make targets."""
    dropped = ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env["BENTOML_DO_NOT_TRACK"] = "true"
    return env


def template_digest() -> str:
    digest = hashlib.sha256()
    for name in TEMPLATE_INPUTS:
        root = TEMPLATE / name
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(TEMPLATE)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def prepared_project() -> Path:
    """build/bench/churn-model with a packaged bento: baked and built again if stale."""
    project, stamp = BUILD / "churn-model", BUILD / "template.sha256"
    digest = template_digest()
    fresh = stamp.exists() and stamp.read_text() == digest
    if fresh and (project / "dist" / "bento.json").exists():
        print(f"reusing {project} (baked from this template)", flush=True)
        return project
    if BUILD.exists():
        shutil.rmtree(BUILD)
    BUILD.mkdir(parents=True)
    print(f"baking the default project into {BUILD}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(BUILD), str(TEMPLATE),
         "git_init=false"],
        check=True,
    )  # fmt: skip
    print(f"running make {' '.join(STAGES)} (a few minutes)", flush=True)
    subprocess.run(["make", "-C", str(project), *STAGES], check=True, env=project_env())
    stamp.write_text(digest)
    return project


def package_name(project: Path) -> str:
    return next(project.glob("src/*/service.py")).parent.name


def one_row_body(project: Path) -> str:
    """A held-out record of the project's own data, as the service's request body."""
    code = (
        "import json; from pathlib import Path\n"
        f"from {package_name(project)} import config, data, features, smoke\n"
        "paths = config.Paths(Path('.')); params = config.load_params(paths.params)\n"
        "rows = features.split(data.load_raw(paths), params)[1].head(1)\n"
        "names = json.loads(paths.model_card.read_text())['spec']['features']\n"
        "print(json.dumps({'records': smoke.to_records(rows, [f['name'] for f in names])}))\n"
    )
    python = project / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", code], cwd=project, env=project_env(), check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


def model_dir(project: Path) -> Path:
    """The folder of the model packed into the bento `make package` built last."""
    built = json.loads((project / "dist" / "bento.json").read_text())
    name, _, version = built["model_tag"].partition(":")
    return project / ".bentoml" / "models" / name / version


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running(
    name: str, command: list[str], cwd: Path, probe: str, log: Path, env: dict | None = None
) -> Iterator[None]:
    """Start a server in its own process group; wait for `probe`; always stop the group."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env={**project_env(), **(env or {})}, stdout=output,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not ready(probe):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log}")
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    threads = min(connections, 2)
    done = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
         "--timeout", "5s", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "rps": figures["requests"] / figures["seconds"],
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "non_2xx": figures["non_2xx"],
        "socket_errors": figures["socket_errors"],
    }


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def measure(urls: dict[str, str], script: Path, args: argparse.Namespace) -> dict:
    """Per concurrency: a warm-up, then `runs` interleaved runs of every server; medians."""
    results: dict[int, dict[str, dict]] = {}
    for connections in args.connections:
        for url in urls.values():
            wrk(url, script, connections, args.warmup)
        runs: dict[str, list[dict]] = {name: [] for name in urls}
        for run in range(args.runs):
            for name, url in urls.items():
                runs[name].append(wrk(url, script, connections, args.duration))
                print(f"  c={connections:<3} run {run + 1}/{args.runs} {name:<5} "
                      f"{runs[name][-1]['rps']:8.0f} req/s  p99 {runs[name][-1]['p99_ms']:7.1f} ms",
                      flush=True)  # fmt: skip
        results[connections] = {name: median_of(found) for name, found in runs.items()}
        results[connections]["runs"] = runs
    return results


def report(results: dict, runs: int, duration: float) -> list[str]:
    """The table, then each target with PASS or MISS."""
    lines = [
        f"Serving, one-row JSON POST /predict, medians of {runs} runs x {duration:g} s "
        f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"load {os.getloadavg()[0]:.1f})",
        f"{'conns':>5} | {'bento req/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} | "
        f"{'bare req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} | {'ratio':>5}",
    ]
    for connections, found in results.items():
        bento, bare = found["bento"], found["bare"]
        failed = lambda r: r["non_2xx"] + r["socket_errors"]  # noqa: E731
        lines.append(
            f"{connections:>5} | {bento['rps']:>11.0f} {bento['p50_ms']:>7.1f} "
            f"{bento['p99_ms']:>7.1f} {failed(bento):>7.0f} | {bare['rps']:>10.0f} "
            f"{bare['p50_ms']:>7.1f} {bare['p99_ms']:>7.1f} {failed(bare):>7.0f} | "
            f"{bento['rps'] / bare['rps']:>5.2f}"
        )
    mark = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    ratios = {c: found["bento"]["rps"] / found["bare"]["rps"] for c, found in results.items()}
    lines.append(
        f"target req/s ratio >= {TARGETS['ratio']} at every concurrency: "
        + ", ".join(f"{c}: {r:.2f} {mark(r >= TARGETS['ratio'])}" for c, r in ratios.items())
    )
    if 8 in results:
        p99 = results[8]["bento"]["p99_ms"]
        lines.append(f"target p99 <= {TARGETS['p99_ms_at_8']:g} ms at 8 connections: "
                     f"{p99:.1f} ms {mark(p99 <= TARGETS['p99_ms_at_8'])}")  # fmt: skip
    if 32 in results:
        worst = max(r["non_2xx"] + r["socket_errors"] for r in results[32]["runs"]["bento"])
        lines.append(f"target no non-2xx at 32 connections: {worst:.0f} in the worst run "
                     f"{mark(worst == 0)}")  # fmt: skip
    if "unlogged" in next(iter(results.values())):
        lines += logging_cost(results)
    return lines


def logging_cost(results: dict) -> list[str]:
    """The bento with its prediction log (the default) against the same bento with
    MONITORING_ENABLED=false: what logging every request costs in req/s and p99."""
    lines = ["prediction logging (monitoring.enabled, the default) vs MONITORING_ENABLED=false:"]
    for connections, found in results.items():
        on, off = found["bento"], found["unlogged"]
        lines.append(
            f"{connections:>5} conns: {on['rps']:>6.0f} vs {off['rps']:>6.0f} req/s "
            f"({on['rps'] / off['rps'] - 1:+.1%}), p99 {on['p99_ms']:.1f} vs {off['p99_ms']:.1f} ms"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project", type=Path, help="a baked, packaged project (default: bake one)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--ports",
        type=int,
        nargs=3,
        default=[3301, 3302, 3303],
        metavar=("BENTO", "BARE", "UNLOGGED"),
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 1
    project = (args.project or prepared_project()).resolve()
    python = project / ".venv" / "bin" / "python"
    bento_port, bare_port, unlogged_port = args.ports
    logs = BUILD / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT % one_row_body(project))
        # The bento as users run it logs every prediction (rotated, so bounded on disk);
        # the same bento with logging off gives the cost of that.
        logged = {"MONITORING_PATH": str(Path(tmp) / "monitoring")}
        with (
            running("bento (make serve)", ["make", "serve", f"PORT={bento_port}"], project,
                    f"http://127.0.0.1:{bento_port}/readyz", logs / "bento.log", logged),
            running("bento, logging off", ["make", "serve", f"PORT={unlogged_port}"], project,
                    f"http://127.0.0.1:{unlogged_port}/readyz", logs / "unlogged.log",
                    {"MONITORING_ENABLED": "false"}),
            running("bare app", [str(python), str(BENCH / "bare_app.py"), "--model-dir",
                                 str(model_dir(project)), "--port", str(bare_port)], project,
                    f"http://127.0.0.1:{bare_port}/readyz", logs / "bare.log"),
        ):  # fmt: skip
            urls = {"bento": f"http://127.0.0.1:{bento_port}/predict",
                    "bare": f"http://127.0.0.1:{bare_port}/predict",
                    "unlogged": f"http://127.0.0.1:{unlogged_port}/predict"}  # fmt: skip
            results = measure(urls, script, args)
    lines = report(results, args.runs, args.duration)
    print("\n" + "\n".join(lines))
    (BUILD / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    (BUILD / "serving.txt").write_text("\n".join(lines) + "\n")
    status = 0
    for script in (BENCH / "batch.py", BENCH / "drift.py"):
        print(f"\n{script.relative_to(TEMPLATE)}:", flush=True)
        command = [str(python), str(script), "--project", str(project)]
        status = status or subprocess.run(command, env=project_env()).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
