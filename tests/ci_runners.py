"""Run a baked project's CI files on this machine: GitLab CI with gitlab-ci-local, GitHub
Actions with act, both on the host (no Docker), and read back what each job did.

gitlab-ci-local runs every job in `.gitlab-ci-local/builds/<job>/`, a fresh copy of the
committed files, and hands a job only the artifacts of the jobs it needs, as GitLab does.
act gives every job an empty workspace that its checkout step fills from the repository;
the actions that need GitHub's services are replaced by tests/ci_stand_ins/.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException, RemoteDisconnected
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from conftest import TEMPLATE, clean_env

GITLAB_CI_LOCAL = TEMPLATE / "node_modules" / ".bin" / "gitlab-ci-local"
ACT = TEMPLATE / ".venv" / "bin" / "act"
STAND_INS = Path(__file__).resolve().parent / "ci_stand_ins"
# actions/checkout is not stood in: act copies the local repository into the job's
# workspace itself (honouring .gitignore) whenever a job checks out its own repository.
STOOD_IN = {
    "astral-sh/setup-uv": "setup-uv",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "actions/cache": "cache",  # its restore/ and save/ actions
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
GITLAB_RESULT = re.compile(r"^ (PASS|FAIL|WARN) +(\S.*?)\s*$", re.M)
# "[<job id>] 🏁  Job succeeded" (--log-prefix-job-id; without it "[<workflow>/<job name>]").
# The generated conftest's pytest header in a job's log: gitlab-ci-local prefixes a line with
# the padded job name and " > ", act with "[job]   | ".
STAGE_OUTPUTS = re.compile(r"^(?:\[([^\]]+)\]\s+\||(\S.*?)\s+>) stage outputs: (.*?)\s*$", re.M)
# act's line for a failed step: "[job]   ❌  Failure - Main make ci-integration [2m48s]".
ACT_FAILURE = "❌  Failure - "
ACT_RESULT = re.compile(r"^\[(?:[^/\]]+/)?([^\]]+?)\s*\] 🏁  Job (succeeded|failed)", re.M)
PIPELINE_TIMEOUT = 3600


@dataclass
class Run:
    """One pipeline or workflow run: its log and the result of every job that ran."""

    output: str
    returncode: int
    jobs: dict[str, str]  # job -> "passed" | "failed" (GitLab: "warned" for allow_failure)

    def tail(self, characters: int = 8000, lines: int = 60) -> str:
        """The end of the log, headed by each failed job's own last lines up to its failure:
        a failed job's cause sits above its post steps and the other jobs' closing lines."""
        failures = []
        for job, result in self.jobs.items():
            if result == "failed":
                own = job_lines(self.output, job)
                ends = [at for at, line in enumerate(own) if ACT_FAILURE in line] or [len(own)]
                for end in ends:
                    failures.append(
                        f"--- {job}, up to its failure:\n"
                        + "\n".join(own[max(0, end - lines) : end + 1])
                    )
        return "\n".join([*failures, "--- the end of the log:", self.output[-characters:]])


def job_lines(output: str, job: str) -> list[str]:
    """A job's own lines of a run's log: act prefixes them "[job]", gitlab-ci-local
    "job (padded) >"."""
    own = re.compile(rf"^(?:\[{re.escape(job)}\]|{re.escape(job)} +>)")
    return [line for line in output.splitlines() if own.match(line)]


def shared_cache(variable: str, default: str) -> str:
    """A cache folder every job of every run shares: downloads only, never build results."""
    return os.environ.get(variable) or str(Path.home() / ".cache" / default)


def tool_env() -> dict[str, Any]:
    """The host environment for the CI tools: no venv of this repo leaks into the jobs."""
    env = clean_env()
    venv = str(TEMPLATE / ".venv")
    env["PATH"] = os.pathsep.join(
        entry for entry in env["PATH"].split(os.pathsep) if not entry.startswith(venv)
    )
    env["UV_CACHE_DIR"] = shared_cache("UV_CACHE_DIR", "uv")
    env["PRE_COMMIT_HOME"] = shared_cache("PRE_COMMIT_HOME", "pre-commit")
    return env


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=CI Test", "-c", "user.email=ci@example.com", *args],
        cwd=repo,
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def clone(source: Path, target: Path, remote_url: str) -> Path:
    """A clone whose origin looks like the hosted repository (both tools read it)."""
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True)
    git(target, "remote", "set-url", "origin", remote_url)
    return target


def execute(
    command: Sequence[str | Path], cwd: Path, log: Path, timeout: float = PIPELINE_TIMEOUT
) -> tuple[str, int]:
    """Run a CI tool with its output written to `log` as it goes (`tail -f` it), and return it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(
            [str(part) for part in command],
            cwd=cwd,
            env=tool_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    return ANSI.sub("", log.read_text(encoding="utf-8", errors="replace")), done.returncode


# ---------------------------------------------------------------- GitLab: gitlab-ci-local


def gitlab_options(variables: dict[str, str], unset: tuple[str, ...] = ()) -> list[str]:
    # UV_CACHE_DIR and PRE_COMMIT_HOME point every job at the host's download caches instead
    # of copying a per-project cache folder in and out of each job; UV_LINK_MODE then links.
    shared = {
        "UV_CACHE_DIR": shared_cache("UV_CACHE_DIR", "uv"),
        "PRE_COMMIT_HOME": shared_cache("PRE_COMMIT_HOME", "pre-commit"),
        "UV_LINK_MODE": "hardlink",
    }
    options = ["--force-shell-executor", "--shell-isolation", "--no-artifacts-to-source"]
    options += ["--no-color", "--ignore-predefined-vars", ",".join(variables) or "none"]
    for name, value in {**shared, **variables}.items():
        options += ["--variable", f"{name}={value}"]
    for name in unset:
        options += ["--unset-variable", name]
    return options


def gitlab_jobs(repo: Path, options: list[str]) -> list[dict[str, Any]]:
    """The jobs gitlab-ci-local would run for these variables, with stage, when, environment."""
    log = repo.parent / f"{repo.name}-jobs.log"
    output, code = execute([GITLAB_CI_LOCAL, *options, "--list-csv"], repo, log, timeout=120)
    assert code == 0, output
    table = output[output.index("name;stage;when") :]
    return list(csv.DictReader(io.StringIO(table), delimiter=";"))


def run_gitlab(repo: Path, options: list[str], manual: Sequence[str] = ()) -> Run:
    """Run the pipeline gitlab-ci-local derives from the branch and variables; start `manual`."""
    command: list[str | Path] = [GITLAB_CI_LOCAL, *options]
    for job in manual:
        # One flag per job: after `--manual a b`, gitlab-ci-local takes b as the only job to run.
        command += ["--manual", job]
    output, code = execute(command, repo, repo.parent / f"{repo.name}-gitlab.log")
    status = {"PASS": "passed", "FAIL": "failed", "WARN": "warned"}
    # Job log lines start with the job's name; only the closing summary starts with a space.
    jobs = {job: status[word] for word, job in GITLAB_RESULT.findall(output)}
    return Run(output, code, jobs)


def gitlab_artifacts(repo: Path, job: str) -> Path:
    """What a job exported as artifacts (the later jobs that need it receive a copy)."""
    return repo / ".gitlab-ci-local" / "artifacts" / job


# ---------------------------------------------------------------- GitHub: act


def used_actions(repo: Path) -> set[str]:
    """Every `owner/name@ref` the workflows use."""
    found: set[str] = set()
    for workflow in (repo / ".github" / "workflows").glob("*.yml"):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            found.update(step["uses"] for step in job.get("steps", []) if "uses" in step)
    return found


def stand_in_options(repo: Path) -> list[str]:
    """--local-repository for each used action that needs GitHub's services (for an action
    in a repository's subfolder, like actions/cache/restore, that whole repository)."""
    options: list[str] = []
    for action in sorted(used_actions(repo)):
        path, ref = action.split("@")
        name = "/".join(path.split("/")[:2])
        if name == "actions/checkout":
            continue
        assert name in STOOD_IN, f"{action} has no local stand-in in {STAND_INS}"
        option = f"{name}@{ref}={STAND_INS / STOOD_IN[name]}"
        options += [] if option in options else ["--local-repository", option]
    return options


def run_act(
    repo: Path,
    event: str,
    workflow: str,
    payload: dict[str, Any],
    artifacts: Path,
    run_id: str,
    secrets: dict[str, str] | None = None,
    runner_labels: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Run:
    """Run one workflow for one event on the host; its artifacts go to artifacts/<run_id>/.

    `runner_labels`: the runs-on labels of self-hosted runners, all run here too."""
    event_file = artifacts.parent / f"event-{run_id}.json"
    event_file.write_text(json.dumps(payload))
    (artifacts / run_id).mkdir(parents=True, exist_ok=True)
    inputs = [f"--input={name}={value}" for name, value in payload.get("inputs", {}).items()]
    command: list[str | Path] = [
        ACT, event, "--workflows", repo / ".github" / "workflows" / workflow,
        "--eventpath", event_file, "--platform", "ubuntu-latest=-self-hosted",
        "--no-cache-server", "--log-prefix-job-id", "--defaultbranch", "main",
        "--action-cache-path", artifacts.parent / "act-cache", *inputs,
        "--env", f"CI_STAND_IN_ARTIFACTS={artifacts}", "--env", f"CI_STAND_IN_RUN_ID={run_id}",
        "--env", f"CI_STAND_INS={STAND_INS}", *stand_in_options(repo),
        *[f"--secret={name}={value}" for name, value in (secrets or {}).items()],
        *[f"--platform={label}=-self-hosted" for label in runner_labels],
        *[f"--env={name}={value}" for name, value in (env or {}).items()],
    ]  # fmt: skip
    output, code = execute(command, repo, artifacts.parent / f"act-{run_id}.log")
    jobs: dict[str, str] = {}
    # A matrix job's runs share its id in the log: one failed run fails the job.
    for job, word in ACT_RESULT.findall(output):
        failed = word == "failed" or jobs.get(job) == "failed"
        jobs[job] = "failed" if failed else "passed"
    return Run(output, code, jobs)


# ---------------------------------------------------------------- servers left behind


def listening_inodes(ports: tuple[int, ...]) -> dict[str, int]:
    """Socket inode -> port for each TCP socket listening on one of `ports`."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and port in ports:  # 0A: LISTEN
                found[fields[9]] = port
    return found


def servers_on(ports: tuple[int, ...]) -> dict[int, int]:
    """Port -> pid of the process listening there."""
    inodes = listening_inodes(ports)
    owners = {}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        for link in links:
            inode = link.removeprefix("socket:[").removesuffix("]")
            if link.startswith("socket:[") and inode in inodes:
                owners[inodes[inode]] = int(fd_dir.parent.name)
    return owners


def stop_servers_started_under(ports: tuple[int, ...], folder: Path) -> dict[int, int]:
    """Stop what a run left listening on `ports`, only if it runs from `folder`; say what."""
    stopped = {}
    for port, pid in servers_on(ports).items():
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            # The local target starts each server in its own session: end the whole group.
            os.killpg(os.getpgid(pid), signal.SIGTERM)
            stopped[port] = pid
    return stopped


# ---------------------------------------------------------------- a lasting host


def supervisorctl(state_dir: Path, *args: str) -> str:
    """Ask the supervisord a host-target deploy left in `state_dir`."""
    command: list[str | Path] = [
        state_dir / "supervisor" / "bin" / "supervisorctl",
        "-c",
        state_dir / "supervisord.conf",
    ]
    return subprocess.run([*command, *args], capture_output=True, text=True).stdout.strip()


def stop_host(state_dir: Path) -> None:
    """Shut down the host's supervisord (and nginx and the bento under it), if it runs."""
    if (state_dir / "supervisord.conf").exists() and supervisorctl(state_dir, "pid").isdigit():
        supervisorctl(state_dir, "shutdown")  # returns at once; it then stops its programs
        deadline = time.monotonic() + 60
        while (state_dir / "supervisord.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    # And whatever outlived it: a bento worker whose `bentoml serve` was killed, or anything
    # of this host if supervisord did not stop in time.
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            mine = int(process.name) in (os.getpid(), os.getppid())
            if not mine and str(state_dir).encode() in (process / "cmdline").read_bytes():
                os.kill(int(process.name), signal.SIGKILL)


@contextlib.contextmanager
def steady_load(
    url: str, body: dict[str, Any], clients: int = 4, pause: float = 0.02
) -> Iterator[collections.Counter[str]]:
    """POST `body` to `url` from `clients` threads (each about one request per `pause`
    seconds, on its own keep-alive connection) until the block ends; count each request's
    final outcome: "ok", "HTTP <status>" or the error's name.

    Like any well-behaved HTTP client, a request that could not be sent on a reused
    keep-alive connection the server had already closed (nginx closes idle ones when a
    reload retires its old workers) is sent once more on a new connection; those are
    counted under "re-sent on a new connection" besides their outcome, never hidden.
    """
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    done = threading.Event()
    where = urlsplit(url)
    host = where.hostname
    assert host is not None, url
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}

    def send(connection: HTTPConnection) -> str:
        connection.request("POST", where.path, payload, headers)
        response = connection.getresponse()
        response.read()
        return "ok" if response.status == 200 else f"HTTP {response.status}"

    def client() -> None:
        connection, reused = HTTPConnection(host, where.port, timeout=30), False
        while not done.wait(pause):
            try:
                try:
                    outcome = send(connection)
                except (BrokenPipeError, ConnectionResetError, RemoteDisconnected):
                    if not reused:
                        raise
                    connection.close()  # the server closed it while idle: never received
                    with lock:
                        outcomes["re-sent on a new connection"] += 1
                    outcome = send(connection)
                reused = True
            except (OSError, HTTPException) as error:  # refused, reset, timed out, garbled
                outcome, reused = type(error).__name__, False
                connection.close()
            with lock:
                outcomes[outcome] += 1
        connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield outcomes
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)


# ---------------------------------------------------------------- shared by the CI-run modules

# The pytest layers, one JUnit file each (reports/junit/<layer>.xml).
LAYERS = {"unit", "data", "model", "artifacts", "integration", "service"}
DEPLOY_PORTS = (3001, 3002, 3003)
GITLAB_REMOTE = "https://gitlab.example.com/ml-team/churn-model.git"
GITHUB_REMOTE = "https://github.com/ml-team/churn-model.git"
MERGE_REQUEST = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_IID": "7",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature/retrain",
    "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
}


def assert_no_servers_left(tmp_path: Path) -> None:
    left = stop_servers_started_under(DEPLOY_PORTS, tmp_path)
    assert not left, f"the pipeline left servers running (port: pid): {left}"


def junit_results(folder: Path) -> dict[str, tuple[int, int]]:
    """Per JUnit file below `folder`: (tests, failures + errors)."""
    results = {}
    for file in sorted(folder.rglob("*.xml")):
        root = ET.parse(file).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        tests = sum(int(suite.get("tests", 0)) for suite in suites)
        bad = sum(int(suite.get("failures", 0)) + int(suite.get("errors", 0)) for suite in suites)
        results[file.stem] = (tests, bad)
    return results


def assert_integration_split(folder: Path, repo: Path, jobs: int = 2) -> None:
    """The integration layer ran as `jobs` parallel jobs (one JUnit file each below `folder`),
    each whole modules, together every module of the project once, all passing."""
    modules = []
    for file in sorted(folder.rglob("integration.xml")):
        cases = list(ET.parse(file).getroot().iter("testcase"))
        assert cases and not any(c.find("failure") is not None or c.find("error") is not None
                                 for c in cases), file  # fmt: skip
        modules.append({case.get("classname", "").split(".")[2] for case in cases})
    assert len(modules) == jobs, f"{len(modules)} integration JUnit files below {folder}"
    assert not set.intersection(*modules), "a module ran in two jobs"
    expected = {module.stem for module in (repo / "tests" / "integration").glob("test_*.py")}
    assert set.union(*modules) == expected


def assert_outputs_handed_over(output: str, bento: str) -> None:
    """Every test job after a stage tested the outputs the jobs before it handed over (the
    package, integration and service jobs the package job's `bento`), not ones rebuilt in
    its tests; the unit job, which needs none, built its own."""
    found = [((act or gitlab).split(":")[0], what) for act, gitlab, what in
             STAGE_OUTPUTS.findall(ANSI.sub("", output))]  # fmt: skip
    assert sorted(job for job, _ in found) == sorted(
        ["unit", "data", "model", "package", "integration", "integration", "service"]
    ), found
    for job, what in found:
        if job == "unit":
            assert what == "built by the tests", what
        else:
            handed = "none" if job in ("data", "model") else bento
            assert what == f"handed over (TESTS_REUSE_OUTPUTS=1), bento {handed}", (job, what)


def assert_passed(run: Run, expected: set[str]) -> None:
    assert run.returncode == 0 and set(run.jobs) == expected, run.tail()
    failed = {job: result for job, result in run.jobs.items() if result != "passed"}
    assert not failed, f"{failed}\n{run.tail()}"


def pipeline_clone(project: Path, tmp_path: Path, remote: str, name: str = "repo") -> Path:
    """A clone of the bake whose origin looks hosted and whose default branch is main."""
    repo = clone(project, tmp_path / name, remote)
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return repo


def gitlab_merge_request(repo: Path) -> list[str]:
    git(repo, "switch", "-q", "-c", MERGE_REQUEST["CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"])
    git(repo, "commit", "-q", "--allow-empty", "-m", "Retrain")
    # A merge-request pipeline has no CI_COMMIT_BRANCH on GitLab.
    return gitlab_options(MERGE_REQUEST, unset=("CI_COMMIT_BRANCH",))


def gitlab_deploy_reports(repo: Path) -> list[Path]:
    """Every deploy a job of the pipeline reported, in its artifacts or build folder."""
    local = repo / ".gitlab-ci-local"
    return sorted(local.glob("*/*/reports/deploys/*.json"))


def workflow_jobs(repo: Path, workflow: str, event: str) -> set[str]:
    """The jobs of a workflow that an `event` run starts (the others are dispatch-only)."""
    jobs = yaml.safe_load((repo / ".github" / "workflows" / workflow).read_text())["jobs"]
    other = "workflow_dispatch" if event != "workflow_dispatch" else "push"
    return {
        name for name, job in jobs.items() if f"event_name == '{other}'" not in job.get("if", "")
    }


def github_repository(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "repository": {"full_name": "ml-team/churn-model", "default_branch": "main"}}


# Every push to main runs the whole check chain in its build job (make build: lint, each test
# layer, the stages between). The pull-request runs (tests/test_ci_check_runs.py) run every
# layer in full; the runs on main (tests/test_ci_runs.py, and the data-stop run), which push
# again and again, keep one module of each layer the stages do not already cover, so they
# prove the chain's order and gating without running the project's suite once per push.
KEPT_MODULES = {
    "unit": "test_config.py",
    "model": "test_gates.py",
    "integration": "test_environment_sync.py",
    "service": "test_bad_requests.py",
}


def keep_one_module_per_layer(repo: Path) -> None:
    for layer, kept in KEPT_MODULES.items():
        for module in sorted((repo / "tests" / layer).glob("test_*.py")):
            if module.name != kept:
                git(repo, "rm", "-q", str(module.relative_to(repo)))
    git(repo, "commit", "-q", "-m", "Keep one test module per layer (pull requests run them all)")


def drop_a_suite_column(repo: Path) -> str:
    """Commit data that lacks a column the suite expects, read through params.yaml."""
    suite = json.loads((repo / "expectations" / "raw.json").read_text())
    column: str = next(
        e["kwargs"]["column"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_to_exist"
    )
    project = json.loads((repo / ".cruft.json").read_text())["context"]["cookiecutter"]["project"]
    # The project's own `data` stage reads the bundled dataset; drop the column from its output.
    for command in (
        ["uv", "run", "--quiet", project, "data"],
        ["uv", "run", "--quiet", "python", "-c",
         "import pandas as pd, sys; pd.read_parquet('data/raw/data.parquet')"
         ".drop(columns=[sys.argv[1]]).to_csv('incoming.csv', index=False)", column],
    ):  # fmt: skip
        output, code = execute(command, repo, repo.parent / "drop-column.log", timeout=600)
        assert code == 0, output
    params = repo / "params.yaml"
    text = params.read_text()
    params.write_text(re.sub(r"(?m)^  source: .*$", "  source: incoming.csv", text, count=1))
    git(repo, "add", "incoming.csv", "params.yaml")
    git(repo, "commit", "-q", "-m", f"New data export (without {column})")
    return column
