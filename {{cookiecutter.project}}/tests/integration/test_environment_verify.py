"""Approvals fail closed: `environments verify` (run by every CI deploy job) against local
servers playing GitHub and GitLab (fake_platforms.py), before and after `environments sync`."""

from __future__ import annotations

import pytest
from fake_platforms import TOKEN, FakeGitHub, FakeGitLab, Server
from test_environment_sync import edit_approval, github_env, gitlab_env, project, sync
from typer.testing import CliRunner

from {{ cookiecutter.package }}.cli import app

pytestmark = pytest.mark.integration
__all__ = ["project"]  # the fixture, shared with the sync tests

SYNC_HINT = "run `make environments-sync PLATFORM={}`, then re-run"


def verify(environment: str, env: dict):
    return CliRunner().invoke(app, ["environments", "verify", environment], env=env)


def name_reviewers(project) -> None:
    for environment in ("preprod", "production"):
        edit_approval(project, environment, reviewer_users=["octocat"])


def on_github(server: Server) -> dict:
    return {**github_env(server), "GITHUB_ACTIONS": "true", "GITLAB_CI": ""}


def on_gitlab(server: Server) -> dict:
    return {**gitlab_env(server), "GITLAB_CI": "true", "GITHUB_ACTIONS": ""}


def test_github_holds_nothing_until_synced_and_then_every_environment(project):
    name_reviewers(project)
    with Server(FakeGitHub()) as server:
        for environment in ("preprod", "production"):
            result = verify(environment, on_github(server))
            assert result.exit_code == 1, result.output
            assert "the environment does not exist on GitHub" in result.output
            assert SYNC_HINT.format("github") in result.output
        assert sync("github", github_env(server)).exit_code == 0
        for environment in ("preprod", "production"):
            result = verify(environment, on_github(server))
            assert result.exit_code == 0, result.output
            assert f"{environment}: github holds it as" in result.output


def test_an_automatic_environment_needs_no_protection_and_sends_nothing(project):
    with Server(FakeGitHub()) as server:
        result = verify("test", on_github(server))
        assert result.exit_code == 0 and "test is automatic" in result.output, result.output
        assert server.platform.requests == []


def test_github_protection_loosened_by_hand_is_named(project):
    name_reviewers(project)
    with Server(FakeGitHub()) as server:
        assert sync("github", github_env(server)).exit_code == 0
        stored = server.platform.environments["production"]
        stored.update(reviewers=[], prevent_self_review=False)
        server.platform.policies["production"].append({"id": 5, "name": "dev", "type": "branch"})
        result = verify("production", on_github(server))
    assert result.exit_code == 1
    for gap in (
        "no required reviewers",
        "octocat is not a required reviewer",
        "self-review is allowed",
        "the branch policy also lets dev deploy",
    ):
        assert gap in result.output, result.output


def test_github_semi_auto_without_a_reviewer_or_wait_timer_is_not_held(project):
    name_reviewers(project)
    edit_approval(project, "preprod", reviewers=0, reviewer_users=[])
    with Server(FakeGitHub()) as server:
        assert sync("github", github_env(server)).exit_code == 0
        result = verify("preprod", on_github(server))
        assert result.exit_code == 1
        assert "nothing holds the job: no required reviewers and no wait timer" in result.output
        edit_approval(project, "preprod", wait_timer_minutes=5)
        assert sync("github", github_env(server)).exit_code == 0
        assert verify("preprod", on_github(server)).exit_code == 0


def test_gitlab_holds_nothing_until_synced_semi_auto_without_a_second_approval(project):
    with Server(FakeGitLab()) as server:
        result = verify("production", on_gitlab(server))
        assert result.exit_code == 1, result.output
        assert "the environment is not protected on GitLab" in result.output
        assert SYNC_HINT.format("gitlab") in result.output
        assert sync("gitlab", gitlab_env(server)).exit_code == 0
        protected = server.platform.protected
        # Semi-auto: protected (Maintainers click its manual job), no approval rule.
        assert protected["preprod"]["approval_rules"] == []
        assert protected["production"]["approval_rules"] != []
        for environment in ("preprod", "production"):
            result = verify(environment, on_gitlab(server))
            assert result.exit_code == 0, result.output


def test_gitlab_approval_rule_removed_by_hand_is_named(project):
    with Server(FakeGitLab()) as server:
        assert sync("gitlab", gitlab_env(server)).exit_code == 0
        server.platform.protected["production"]["approval_rules"] = []
        server.platform.project["allow_pipeline_trigger_approve_deployment"] = True
        server.platform.project["ci_pipeline_variables_minimum_override_role"] = "developer"
        result = verify("production", on_gitlab(server))
    assert result.exit_code == 1
    assert "approval rule ('access_level', 40, 1) is missing" in result.output, result.output
    assert "whoever started the pipeline may approve it" in result.output
    assert "pipeline variables are not restricted to Maintainers" in result.output


@pytest.mark.parametrize(
    ("platform", "variable"), [("github", "GITHUB_TOKEN"), ("gitlab", "GITLAB_TOKEN")]
)
def test_no_token_fails_closed_naming_the_variable(project, platform, variable):
    with Server(FakeGitHub() if platform == "github" else FakeGitLab()) as server:
        env = (on_github if platform == "github" else on_gitlab)(server) | {variable: ""}
        result = verify("production", env)
    assert result.exit_code == 1
    assert (
        f"cannot check production's approval on {platform}: {variable} is not set" in result.output
    )


def test_outside_github_actions_and_gitlab_ci_a_manual_environment_is_refused(project):
    result = verify("production", {"GITHUB_ACTIONS": "", "GITLAB_CI": "", "GITHUB_TOKEN": TOKEN})
    assert result.exit_code == 1
    assert (
        "production is manual: a CI deploy checks its approval on GitHub Actions" in result.output
    )
