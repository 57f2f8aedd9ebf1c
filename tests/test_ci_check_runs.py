"""The generated CI files' runs that deploy nothing, for real, on one ci_project default
project: the merge-request pipeline under gitlab-ci-local and the pull-request workflow under
act, and GitLab's merge-request and main pipelines stopping at data that lost a column.

Slow (minutes each): every job installs the project and runs its test layers. Nothing here
serves on 3001-3003, so these run beside tests/test_ci_runs.py (which deploys there): `make
test` hands each module to its own xdist worker (--dist loadfile; tests/conftest.py orders
them). Each run checks it left no server behind.
"""

from __future__ import annotations

import json

import pytest
from ci_runners import (
    GITHUB_REMOTE,
    GITLAB_REMOTE,
    LAYERS,
    assert_integration_split,
    assert_no_servers_left,
    assert_outputs_handed_over,
    assert_passed,
    drop_a_suite_column,
    git,
    github_repository,
    gitlab_artifacts,
    gitlab_deploy_reports,
    gitlab_jobs,
    gitlab_merge_request,
    gitlab_options,
    junit_results,
    keep_one_module_per_layer,
    pipeline_clone,
    run_act,
    run_gitlab,
    workflow_jobs,
)
from release_store import deploys

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
    assert [job["name"] for job in planned if job["stage"] == "integration"] == [
        "integration: [1/2]", "integration: [2/2]"
    ]  # fmt: skip
    assert_integration_split(local, repo)
    # The service job load-tested the bento the package job built, received as an artifact;
    # the model, integration and service tests tested it and the train job's model.
    assert list(gitlab_artifacts(repo, "package").glob("dist/*.bento")), run.tail()
    built = json.loads((gitlab_artifacts(repo, "package") / "dist" / "bento.json").read_text())
    assert_outputs_handed_over(run.output, built["tag"])
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
    assert run.output.count("[integration] 🏁  Job succeeded") == 2, run.tail()
    # No pull-request job monitors: a report there would be a test's, leaked into the job's
    # own step summary.
    assert "Summary - ### Monitoring" not in run.output, run.tail()
    assert_integration_split(artifacts / "1", repo)
    assert list((artifacts / "1").rglob("loadtest/test/result.json")), "no load-test report"
    [built] = (artifacts / "1").rglob("bento.json")
    assert_outputs_handed_over(run.output, json.loads(built.read_text())["tag"])
    assert_no_servers_left(tmp_path)


@pytest.mark.parametrize("pipeline", ["merge_request", "default_branch"])
def test_gitlab_pipeline_stops_at_the_data_when_a_column_is_dropped(
    ci_project, tmp_path, pipeline, request
):
    repo = pipeline_clone(ci_project, tmp_path, GITLAB_REMOTE)
    if pipeline == "merge_request":
        options = gitlab_merge_request(repo)
        stopping_job = "data"
    else:
        keep_one_module_per_layer(repo)
        store = request.getfixturevalue("store")
        options, stopping_job = gitlab_options({"MLFLOW_TRACKING_URI": store.uri}), "build"
    column = drop_a_suite_column(repo)
    planned = [job["name"] for job in gitlab_jobs(repo, options)]
    manual = [job["name"] for job in gitlab_jobs(repo, options) if job["when"] == "manual"]

    run = run_gitlab(repo, options, manual=manual)

    assert run.returncode != 0, run.tail()
    before = planned[: planned.index(stopping_job)]
    assert run.jobs == {**dict.fromkeys(before, "passed"), stopping_job: "failed"}, run.tail()
    failure = run.output[run.output.index(f"{stopping_job} ") :]
    assert column in failure and "expect_" in failure, run.tail()
    assert gitlab_deploy_reports(repo) == [], "a deploy was reported"
    if pipeline == "default_branch":
        assert deploys(store) == [], "a deploy was recorded"
        assert not [k for k in store.objects() if "/bentos/" in k], "a bento was released"
    assert_no_servers_left(tmp_path)
