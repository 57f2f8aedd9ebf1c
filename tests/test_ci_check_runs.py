"""The generated CI files' check-only runs, for real: the merge-request pipeline under
gitlab-ci-local and the pull-request workflow under act, on one ci_project default project.

Slow (minutes each): every job installs the project and runs its test layers. They deploy
nothing, so they run beside tests/test_ci_runs.py (which deploys on 3001-3003): `make test`
hands each module to its own xdist worker (--dist loadfile; tests/conftest.py orders them).
"""

from __future__ import annotations

import pytest
from ci_runners import (
    GITHUB_REMOTE,
    GITLAB_REMOTE,
    LAYERS,
    assert_no_servers_left,
    assert_passed,
    git,
    github_repository,
    gitlab_artifacts,
    gitlab_deploy_reports,
    gitlab_jobs,
    gitlab_merge_request,
    junit_results,
    pipeline_clone,
    run_act,
    run_gitlab,
    workflow_jobs,
)

pytestmark = [pytest.mark.slow, pytest.mark.ci_run]


def test_gitlab_merge_request_pipeline_runs_every_check_and_deploys_nothing(ci_project, tmp_path):
    repo = pipeline_clone(ci_project, tmp_path, GITLAB_REMOTE)
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
    assert gitlab_deploy_reports(repo) == []
    assert_no_servers_left(tmp_path)


def test_github_pull_request_workflow_runs_every_check(ci_project, tmp_path):
    repo = pipeline_clone(ci_project, tmp_path, GITHUB_REMOTE)
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
