"""The generated CI/CD files, run for real: GitLab CI under gitlab-ci-local, GitHub Actions
under act, both on this machine, on one baked default project (ci=github+gitlab).

Slow (minutes per pipeline): every job installs the project and the jobs train, package,
serve and deploy a real model. The deploy jobs serve on the environments' ports 3001-3003,
so one pipeline runs at a time, and each test checks nothing is left listening there.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from ci_runners import (
    Run,
    clone,
    execute,
    git,
    gitlab_artifacts,
    gitlab_jobs,
    gitlab_options,
    run_act,
    run_gitlab,
    servers_on,
    stop_servers_started_under,
)

# Part of `make test`; `make test-ci-runs` runs only these.
pytestmark = [pytest.mark.slow, pytest.mark.ci_run]

ENVIRONMENTS = ["test", "preprod", "production"]
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


@pytest.fixture(scope="module")
def baked(cookies_session) -> Path:
    """The default project, committed on main as a user would push it."""
    result = cookies_session.bake(extra_context={"git_init": True})
    assert result.exit_code == 0, result.exception
    repo = Path(result.project_path)
    git(repo, "commit", "-q", "-m", "Bake the project")
    git(repo, "branch", "-M", "main")
    return repo


@pytest.fixture(autouse=True)
def deploy_ports_stay_free(tmp_path):
    """Refuse to start while another process serves on 3001-3003; stop what a run left."""
    busy = servers_on(DEPLOY_PORTS)
    assert not busy, f"ports already in use (port: pid): {busy}; stop those servers first"
    yield
    stop_servers_started_under(DEPLOY_PORTS, tmp_path)


def assert_no_servers_left(tmp_path: Path) -> None:
    left = stop_servers_started_under(DEPLOY_PORTS, tmp_path)
    assert not left, f"the pipeline left servers running (port: pid): {left}"


def checkout_branch(repo: Path, branch: str) -> None:
    git(repo, "switch", "-q", "-c", branch)
    git(repo, "commit", "-q", "--allow-empty", "-m", "Retrain")


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


def deploy_records(history: Path) -> dict[str, list[str]]:
    """Environment -> bentos deployed there successfully, oldest first."""
    assert history.is_file(), f"no deploy history at {history}"
    lines = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    deployed: dict[str, list[str]] = {}
    for record in lines:
        if record.get("success"):
            deployed.setdefault(record["environment"], []).append(record["bento"])
    return deployed


def assert_passed(run: Run, expected: set[str]) -> None:
    assert run.returncode == 0 and set(run.jobs) == expected, run.tail()
    failed = {job: result for job, result in run.jobs.items() if result != "passed"}
    assert not failed, f"{failed}\n{run.tail()}"


def pipeline_clone(baked: Path, tmp_path: Path, remote: str, name: str = "repo") -> Path:
    """A clone of the bake whose origin looks hosted and whose default branch is main."""
    repo = clone(baked, tmp_path / name, remote)
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return repo


def drop_a_suite_column(repo: Path) -> str:
    """Commit data that lacks a column the suite expects, read through params.yaml."""
    suite = json.loads((repo / "expectations" / "raw.json").read_text())
    column = next(
        e["kwargs"]["column"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_to_exist"
    )
    project = json.loads((repo / ".cookiecutter.json").read_text())["project"]
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


def gitlab_merge_request(repo: Path) -> list[str]:
    git(repo, "switch", "-q", "-c", MERGE_REQUEST["CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"])
    git(repo, "commit", "-q", "--allow-empty", "-m", "Retrain")
    # A merge-request pipeline has no CI_COMMIT_BRANCH on GitLab.
    return gitlab_options(MERGE_REQUEST, unset=("CI_COMMIT_BRANCH",))


def gitlab_history_files(repo: Path) -> list[Path]:
    """Every deploy history a job of the pipeline left, in its artifacts or build folder."""
    local = repo / ".gitlab-ci-local"
    return sorted(local.glob("artifacts/*/.state/history.jsonl")) + sorted(
        local.glob("builds/*/.state/history.jsonl")
    )


def test_gitlab_merge_request_pipeline_runs_every_check_and_deploys_nothing(baked, tmp_path):
    repo = pipeline_clone(baked, tmp_path, GITLAB_REMOTE)
    options = gitlab_merge_request(repo)
    planned = gitlab_jobs(repo, options)
    assert [job for job in planned if job["environment"]] == [], "a merge request deploys"

    run = run_gitlab(repo, options)

    assert_passed(run, {job["name"] for job in planned})
    local = repo / ".gitlab-ci-local" / "artifacts"
    results = junit_results(local)
    assert set(results) >= LAYERS, f"JUnit files: {sorted(results)}"
    assert all(tests and not bad for tests, bad in results.values()), results
    # The service job load-tested the bento the package job built, received as an artifact.
    assert list(gitlab_artifacts(repo, "package").glob("dist/*.bento")), run.tail()
    assert list(gitlab_artifacts(repo, "service").glob("reports/loadtest/test/result.json"))
    assert gitlab_history_files(repo) == []
    assert_no_servers_left(tmp_path)


def test_gitlab_default_branch_pipeline_carries_one_bento_through_production(baked, tmp_path):
    repo = pipeline_clone(baked, tmp_path, GITLAB_REMOTE)
    options = gitlab_options({})
    planned = gitlab_jobs(repo, options)
    deploy_jobs = {job["environment"]: job["name"] for job in planned if job["environment"]}
    assert list(deploy_jobs) == ENVIRONMENTS, planned
    manual = [job["name"] for job in planned if job["when"] == "manual"]
    assert manual == [deploy_jobs["preprod"], deploy_jobs["production"]], planned

    run = run_gitlab(repo, options, manual=manual)

    assert_passed(run, {job["name"] for job in planned})
    started = [run.output.index(f"{deploy_jobs[env]} ") for env in ENVIRONMENTS]
    assert started == sorted(started), "deploy jobs ran out of order"
    built = {
        json.loads(f.read_text())["tag"] for f in tmp_path.rglob("artifacts/*/dist/bento.json")
    }
    assert len(built) == 1, f"more than one bento built: {built}"
    history = gitlab_artifacts(repo, deploy_jobs["production"]) / ".state" / "history.jsonl"
    assert deploy_records(history) == {env: list(built) for env in ENVIRONMENTS}
    results = junit_results(gitlab_artifacts(repo, "build") / "reports")
    assert results and all(tests and not bad for tests, bad in results.values()), results
    assert_no_servers_left(tmp_path)


@pytest.mark.parametrize("pipeline", ["merge_request", "default_branch"])
def test_gitlab_pipeline_stops_at_the_data_when_a_column_is_dropped(baked, tmp_path, pipeline):
    repo = pipeline_clone(baked, tmp_path, GITLAB_REMOTE)
    if pipeline == "merge_request":
        options = gitlab_merge_request(repo)
        stopping_job = "data"
    else:
        options, stopping_job = gitlab_options({}), "build"
    column = drop_a_suite_column(repo)
    planned = [job["name"] for job in gitlab_jobs(repo, options)]
    manual = [job["name"] for job in gitlab_jobs(repo, options) if job["when"] == "manual"]

    run = run_gitlab(repo, options, manual=manual)

    assert run.returncode != 0, run.tail()
    before = planned[: planned.index(stopping_job)]
    assert run.jobs == {**dict.fromkeys(before, "passed"), stopping_job: "failed"}, run.tail()
    failure = run.output[run.output.index(f"{stopping_job} ") :]
    assert column in failure and "expect_" in failure, run.tail()
    assert gitlab_history_files(repo) == [], "a deploy was recorded"
    assert_no_servers_left(tmp_path)


def workflow_jobs(repo: Path, workflow: str, event: str) -> set[str]:
    """The jobs of a workflow that an `event` run starts (the others are dispatch-only)."""
    jobs = yaml.safe_load((repo / ".github" / "workflows" / workflow).read_text())["jobs"]
    other = "workflow_dispatch" if event != "workflow_dispatch" else "push"
    return {
        name for name, job in jobs.items() if f"event_name == '{other}'" not in job.get("if", "")
    }


def github_repository(payload: dict) -> dict:
    return {**payload, "repository": {"full_name": "ml-team/churn-model", "default_branch": "main"}}


def test_github_pull_request_workflow_runs_every_check(baked, tmp_path):
    repo = pipeline_clone(baked, tmp_path, GITHUB_REMOTE)
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "switch", "-q", "-c", "feature/retrain")
    git(repo, "commit", "-q", "--allow-empty", "-m", "Retrain")
    head = git(repo, "rev-parse", "HEAD")
    pull_request = {
        "number": 7,
        "head": {"ref": "feature/retrain", "sha": head},
        "base": {"ref": "main", "sha": base},
    }
    payload = github_repository({"action": "opened", "number": 7, "pull_request": pull_request})
    artifacts = tmp_path / "artifacts"

    run = run_act(repo, "pull_request", "ci.yml", payload, artifacts, run_id="1")

    assert_passed(run, workflow_jobs(repo, "ci.yml", "pull_request"))
    results = junit_results(artifacts / "1")
    assert set(results) >= LAYERS, f"JUnit files: {sorted(results)}"
    assert all(tests and not bad for tests, bad in results.values()), results
    assert list((artifacts / "1").rglob("loadtest/test/result.json")), "no load-test report"
    assert_no_servers_left(tmp_path)


def test_github_promotion_workflow_carries_one_bento_through_production(baked, tmp_path):
    repo = pipeline_clone(baked, tmp_path, GITHUB_REMOTE)
    head = git(repo, "rev-parse", "HEAD")
    payload = github_repository({"ref": "refs/heads/main", "before": "0" * 40, "after": head})
    artifacts = tmp_path / "artifacts"

    run = run_act(repo, "push", "cd.yml", payload, artifacts, run_id="1")

    assert_passed(run, workflow_jobs(repo, "cd.yml", "push"))
    built = {json.loads(f.read_text())["tag"] for f in (artifacts / "1").glob("*/dist/bento.json")}
    assert len(built) == 1, f"more than one bento built: {built}"
    history = artifacts / "1" / "release-production" / ".state" / "history.jsonl"
    assert deploy_records(history) == {env: list(built) for env in ENVIRONMENTS}
    assert_no_servers_left(tmp_path)

    # Run workflow by hand: promote to production again from that run's release artifacts.
    inputs = {"environment": "production", "action": "promote", "bento": "", "run_id": "1"}
    dispatch = github_repository({"ref": "refs/heads/main", "inputs": inputs})

    run = run_act(repo, "workflow_dispatch", "cd.yml", dispatch, artifacts, run_id="2")

    assert_passed(run, {"dispatch-production"})
    # It starts from run 1's release-preprod records and adds its own production deploy.
    dispatched = artifacts / "2" / "release-production" / ".state" / "history.jsonl"
    assert deploy_records(dispatched) == {env: list(built) for env in ENVIRONMENTS}
    new = set(dispatched.read_text().splitlines()) - set(history.read_text().splitlines())
    assert [json.loads(line)["environment"] for line in new] == ["production"], new
    assert_no_servers_left(tmp_path)
