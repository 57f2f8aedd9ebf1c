"""CI benchmark: the default project's pipeline stage by stage, and the pull-request checks'
critical path.

Bakes the default project afresh into build/bench-ci/ (stage times need a project that has
built nothing yet), installs it, then times, one command at a time:
1. each stage of the pipeline (`make data`, `validate`, `train`, `evaluate`, `package`);
2. `make ci-install` into a new venv from a warm cache (what every CI job pays first);
3. each pull-request check job's target (`cicd.CHECKS`, the project's own description of
   the graph), as the job runs it; a check split over parallel jobs (`shards`), each of
   them in turn, with its CI_NODE_INDEX and CI_NODE_TOTAL.
The critical path is the longest chain of the graph (`cicd.check_needs`), each job costing
its install plus its target (a split check: its slowest part): the wall time of a pull
request with a runner per job. Its ratio to the serial sum (one runner, every job one after
another) is what the graph saves.

    uv run python bench/ci.py [--keep]
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
BUILD = TEMPLATE / "build" / "bench-ci"
STAGES = ("data", "validate", "train", "evaluate", "package")


def project_env() -> dict[str, str]:
    """A user's shell for the baked project: no venv of this repository."""
    dropped = ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env["BENTOML_DO_NOT_TRACK"] = "true"
    return env


def timed(project: Path, *targets: str, env: dict[str, str] | None = None) -> float:
    """Seconds `make <targets>` took in `project` (with `env` added to a user's shell);
    stops the benchmark if it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        ["make", "--no-print-directory", *targets], cwd=project, env=project_env() | (env or {}),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    command = " ".join([*(f"{k}={v}" for k, v in (env or {}).items()), "make", *targets])
    if done.returncode != 0:
        sys.exit(f"{command} failed in {project}:\n{done.stderr[-3000:]}")
    print(f"  {command:<33} {seconds:7.1f} s", flush=True)
    return seconds


def timed_job(project: Path, job) -> list[float]:
    """Seconds of a check job's target; of each of its parallel jobs for a split check."""
    if job.shards == 1:
        return [timed(project, job.target)]
    return [
        timed(project, job.target, env={"CI_NODE_INDEX": str(k), "CI_NODE_TOTAL": str(job.shards)})
        for k in range(1, job.shards + 1)
    ]


def load_cicd(project: Path):
    """The baked project's own cicd.py: the checks and their graph, as its CI files have them.
    Imported as part of its package (it reads the environments through the package's schema)."""
    [path] = project.glob("src/*/cicd.py")
    sys.path.insert(0, str(path.parent.parent))
    return importlib.import_module(f"{path.parent.name}.cicd")


def critical_path(jobs: dict[str, float], needs: dict[str, list[str]]) -> tuple[float, list]:
    """The longest chain through the graph (jobs in an order where needs come first), with
    the jobs on it: each job starts when the last of its needs finishes."""
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for name, seconds in jobs.items():
        waits = needs[name]
        last = max(waits, key=finish.__getitem__) if waits else None
        finish[name] = (finish[last] if last else 0.0) + seconds
        before[name] = last
    end = max(finish, key=finish.__getitem__)
    path = [end]
    while (previous := before[path[-1]]) is not None:
        path.append(previous)
    return finish[end], path[::-1]


def report(stages: dict, install: float, jobs: dict[str, list[float]], needs: dict) -> list[str]:
    """`jobs`: each check's target seconds, one figure per parallel job it runs as."""
    per_job = {name: install + max(parts) for name, parts in jobs.items()}
    longest, path = critical_path(per_job, needs)
    serial = sum(install + part for parts in jobs.values() for part in parts)
    lines = [
        f"CI timings, default project ({os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.1f})",
        "pipeline stages (make <stage>):",
        *[f"  {name:<12} {seconds:7.1f} s" for name, seconds in stages.items()],
        f"  {'total':<12} {sum(stages.values()):7.1f} s",
        f"pull-request jobs (warm `make ci-install` {install:.1f} s each, then the target):",
        f"  {'job':<12} {'target s':>8} {'job s':>7}  needs",
    ]
    for name, parts in jobs.items():
        mark = "*" if name in path else " "
        waits = ", ".join(needs[name]) or "-"
        split = f"  (parallel jobs: {' / '.join(f'{part:.1f}' for part in parts)})"
        lines.append(
            f"{mark} {name:<12} {max(parts):8.1f} {per_job[name]:7.1f}  {waits}"
            + (split if len(parts) > 1 else "")
        )
    lines += [
        f"critical path (*): {' -> '.join(path)} = {longest:.1f} s ({longest / 60:.1f} min)",
        f"serial, one runner: {serial:.1f} s; critical path / serial = {longest / serial:.2f}",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep build/bench-ci/ afterwards")
    args = parser.parse_args()
    if BUILD.exists():
        shutil.rmtree(BUILD)
    BUILD.mkdir(parents=True)
    print(f"baking the default project into {BUILD}", flush=True)
    # With git_init (the default): the lint job's pre-commit needs a repository.
    subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(BUILD), str(TEMPLATE)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    project = BUILD / "churn-model"
    cicd = load_cicd(project)
    try:
        timed(project, "install")
        # What a CI job pays first: a new venv from uv.lock, the download cache warm.
        shutil.rmtree(project / ".venv")
        install = timed(project, "ci-install")
        print("pipeline stages:", flush=True)
        stages = {stage: timed(project, stage) for stage in STAGES}
        print("pull-request jobs:", flush=True)
        jobs = {job.name: timed_job(project, job) for job in cicd.CHECKS}
        needs = {job.name: cicd.check_needs(job) for job in cicd.CHECKS}
    finally:
        subprocess.run(["make", "-C", str(project), "down"], env=project_env(),
                       capture_output=True)  # fmt: skip
    lines = report(stages, install, jobs, needs)
    print("\n" + "\n".join(lines))
    (TEMPLATE / "build" / "bench-ci.txt").write_text("\n".join(lines) + "\n")
    if not args.keep:
        shutil.rmtree(BUILD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
