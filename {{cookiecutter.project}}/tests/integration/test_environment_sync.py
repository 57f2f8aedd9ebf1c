"""`environments sync` against local servers playing GitHub and GitLab (fake_platforms.py).

The real platforms are not reachable from tests: these servers check each request's method,
path, authentication and JSON body, keep state like the platforms, and record what was sent.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml
from fake_platforms import TOKEN, FakeGitHub, FakeGitLab, Server
from typer.testing import CliRunner

from {{ cookiecutter.package }}.cli import app
from {{ cookiecutter.package }}.platforms import api as platforms

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_VARIABLES = (
    "GITHUB_TOKEN",
    "GITHUB_REPOSITORY",
    "GITHUB_API_URL",
    "GITLAB_TOKEN",
    "GITLAB_PROJECT",
    "GITLAB_API_URL",
    "CI_PROJECT_ID",
    "CI_API_V4_URL",
)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project root holding the shipped environments, and no platform settings. Production
    is served by its deploy job's runner, wherever this project serves it: on a lasting
    host, GitLab also gets a pipeline schedule (tested on its own below)."""
    shutil.copytree(PROJECT_ROOT / "environments", tmp_path / "environments")
    serve_production(tmp_path, {"target": "local", "port": 3003})
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    for name in PLATFORM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def edit_approval(project: Path, environment: str, **changes) -> None:
    file = project / "environments" / f"{environment}.yaml"
    document = yaml.safe_load(file.read_text("utf-8"))
    document["approval"].update(changes)
    file.write_text(yaml.safe_dump(document), "utf-8")


def sync(platform: str, env: dict, *extra: str):
    return CliRunner().invoke(
        app, ["environments", "sync", "--platform", platform, *extra], env=env
    )


def github_env(server: Server) -> dict:
    return {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": "acme/churn",
        "GITHUB_API_URL": server.url,
    }


def gitlab_env(server: Server) -> dict:
    return {"GITLAB_TOKEN": TOKEN, "CI_PROJECT_ID": "77", "GITLAB_API_URL": f"{server.url}/api/v4"}


ENVIRONMENTS = "/repos/acme/churn/environments"


def test_github_sync_applies_every_environment_and_a_second_sync_changes_nothing(project):
    edit_approval(project, "production", reviewer_users=["octocat"], reviewer_teams=["ml-leads"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    github = FakeGitHub()
    with Server(github) as server:
        first = sync("github", github_env(server))
        assert first.exit_code == 0, first.output
        assert github.writes() == [
            ("PUT", f"{ENVIRONMENTS}/test"),
            ("PUT", f"{ENVIRONMENTS}/preprod"),
            ("POST", f"{ENVIRONMENTS}/preprod/deployment-branch-policies"),
            ("PUT", f"{ENVIRONMENTS}/production"),
            ("POST", f"{ENVIRONMENTS}/production/deployment-branch-policies"),
        ]
        branch_only = {"protected_branches": False, "custom_branch_policies": True}
        assert github.environments["production"] == {
            "wait_timer": 0,
            "prevent_self_review": True,
            "reviewers": [{"type": "User", "id": 1}, {"type": "Team", "id": 42}],
            "deployment_branch_policy": branch_only,
        }
        # Semi-auto on GitHub: one reviewer's approval is its click.
        assert github.environments["preprod"]["reviewers"] == [{"type": "User", "id": 1}]
        assert github.environments["preprod"]["deployment_branch_policy"] == branch_only
        # test has no approval: every rule is cleared, any branch may deploy.
        assert github.environments["test"] == {
            "wait_timer": 0,
            "prevent_self_review": False,
            "reviewers": [],
            "deployment_branch_policy": None,
        }
        assert [p["name"] for p in github.policies["production"]] == ["main"]
        assert TOKEN not in first.output
        state = (dict(github.environments), {k: list(v) for k, v in github.policies.items()})

        github.requests.clear()
        second = sync("github", github_env(server))
        assert second.exit_code == 0, second.output
        # The environments are put again (PUT is idempotent); no branch policy is added twice.
        assert github.writes() == [
            ("PUT", f"{ENVIRONMENTS}/test"),
            ("PUT", f"{ENVIRONMENTS}/preprod"),
            ("PUT", f"{ENVIRONMENTS}/production"),
        ]
        assert (github.environments, github.policies) == state


def test_github_sync_deletes_branch_policies_not_in_the_file(project):
    edit_approval(project, "production", reviewer_teams=["ml-leads"], branches=["main", "hotfix/*"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    github = FakeGitHub()
    github.environments["production"] = {}
    github.policies["production"] = [
        {"id": 5, "name": "main", "type": "branch"},
        {"id": 6, "name": "release/*", "type": "branch"},
        {"id": 7, "name": "v*", "type": "tag"},
    ]
    with Server(github) as server:
        result = sync("github", github_env(server))
    assert result.exit_code == 0, result.output
    production = f"{ENVIRONMENTS}/production/deployment-branch-policies"
    assert [w for w in github.writes() if "production/" in w[1]] == [
        ("POST", production),
        ("DELETE", f"{production}/6"),
        ("DELETE", f"{production}/7"),
    ]
    assert sorted(p["name"] for p in github.policies["production"]) == ["hotfix/*", "main"]
    posted = [r.body for r in github.requests if r.method == "POST" and "production/" in r.path]
    assert posted == [{"name": "hotfix/*", "type": "branch"}]


def test_github_branch_policies_are_listed_across_pages(project):
    edit_approval(project, "production", reviewer_teams=["ml-leads"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    github = FakeGitHub(page_limit=2)
    github.environments["production"] = {}
    github.policies["production"] = [
        {"id": 10 + n, "name": name, "type": "branch"}
        for n, name in enumerate(["a", "b", "c", "main", "d"])
    ]
    with Server(github) as server:
        result = sync("github", github_env(server))
    assert result.exit_code == 0, result.output
    listed = [r for r in github.requests if r.method == "GET" and "production/" in r.path]
    assert len(listed) == 3  # 5 policies, 2 a page
    assert [p["name"] for p in github.policies["production"]] == ["main"]
    assert ("POST", f"{ENVIRONMENTS}/production/deployment-branch-policies") not in (
        github.writes()
    )


def test_reviewer_names_without_a_count_are_refused_when_the_file_is_read(project):
    edit_approval(project, "production", reviewers=0, reviewer_users=["octocat"])
    result = sync("github", {}, "--dry-run")
    assert result.exit_code != 0
    assert "reviewer_users/reviewer_teams are listed but reviewers is 0" in str(
        result.exception or result.output
    )


def test_github_needs_named_reviewers_and_says_so_before_sending_anything(project):
    github = FakeGitHub()
    with Server(github) as server:
        result = sync("github", github_env(server))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "environments sync: environments/preprod.yaml: approval: reviewers is 1 but GitHub "
        "needs named reviewers: list logins in reviewer_users or team slugs in reviewer_teams"
    ]
    assert github.requests == []


def test_an_unknown_team_is_one_line_naming_environment_method_path_and_status(project):
    edit_approval(project, "production", reviewer_teams=["ghosts"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    github = FakeGitHub()
    with Server(github) as server:
        result = sync("github", github_env(server))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "environments sync: environment production: GET /orgs/acme/teams/ghosts "
        "failed with HTTP 404: Not Found"
    )
    # Reviewers are looked up before anything is written: nothing changed on the platform.
    assert github.writes() == []


def test_a_refused_update_is_one_line_with_the_platforms_reason(project):
    edit_approval(project, "production", reviewer_users=["outsider"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    github = FakeGitHub()
    with Server(github) as server:
        result = sync("github", github_env(server))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "environments sync: environment production: PUT /repos/acme/churn/environments/"
        "production failed with HTTP 422: Reviewers must have at least read access to the "
        "repository."
    )


PROTECTED = "/api/v4/projects/77/protected_environments"


def test_gitlab_sync_protects_environments_and_a_second_sync_writes_nothing(project):
    gitlab = FakeGitLab()
    with Server(gitlab) as server:
        first = sync("gitlab", gitlab_env(server))
        assert first.exit_code == 0, first.output
        assert gitlab.writes() == [
            ("POST", PROTECTED),
            ("POST", PROTECTED),
            ("PUT", "/api/v4/projects/77"),
        ]
        posted = [r.body for r in gitlab.requests if r.method == "POST"]
        assert posted == [
            {
                "name": "preprod",
                "deploy_access_levels": [{"access_level": 40}],
                "approval_rules": [],
            },
            {
                "name": "production",
                "deploy_access_levels": [{"access_level": 40}],
                "approval_rules": [{"access_level": 40, "required_approvals": 1}],
            },
        ]
        assert sorted(gitlab.protected) == ["preprod", "production"]  # test stays open
        assert gitlab.project["allow_pipeline_trigger_approve_deployment"] is False
        # Run pipeline's variables (DEPLOY_*, or anything a deploy job reads): Maintainers only.
        assert gitlab.project["restrict_user_defined_variables"] is True
        assert gitlab.project["ci_pipeline_variables_minimum_override_role"] == "maintainer"
        assert TOKEN not in first.output

        gitlab.requests.clear()
        second = sync("gitlab", gitlab_env(server))
        assert second.exit_code == 0, second.output
        assert gitlab.writes() == []
        assert second.output.count("unchanged") == 3


def test_gitlab_sync_updates_existing_protection_in_place_and_unprotects_test(project):
    edit_approval(project, "production", reviewers=2, reviewer_teams=["acme/ml-leads"])
    gitlab = FakeGitLab()
    gitlab.protected["test"] = {
        "name": "test",
        "deploy_access_levels": [{"id": 1, "access_level": 30}],
        "approval_rules": [],
    }
    gitlab.protected["production"] = {
        "name": "production",
        "deploy_access_levels": [
            {"id": 2, "access_level": 30, "user_id": None, "group_id": None},
            {"id": 3, "access_level": 40, "user_id": None, "group_id": None},
        ],
        "approval_rules": [
            {
                "id": 4,
                "access_level": 40,
                "user_id": None,
                "group_id": None,
                "required_approvals": 1,
            }
        ],
    }
    with Server(gitlab) as server:
        result = sync(
            "gitlab", gitlab_env(server) | {"CI_PROJECT_ID": "", "GITLAB_PROJECT": "acme/churn"}
        )
    assert result.exit_code == 0, result.output
    by_path = "/api/v4/projects/acme%2Fchurn/protected_environments"
    assert ("DELETE", f"{by_path}/test") in gitlab.writes()
    put = next(
        r for r in gitlab.requests if r.method == "PUT" and r.path == f"{by_path}/production"
    )
    assert put.body == {
        "deploy_access_levels": [{"id": 2, "_destroy": True}],
        "approval_rules": [{"group_id": 21, "required_approvals": 2}, {"id": 4, "_destroy": True}],
    }
    production = gitlab.protected["production"]
    assert [level["access_level"] for level in production["deploy_access_levels"]] == [40]
    assert [(r["group_id"], r["required_approvals"]) for r in production["approval_rules"]] == [
        (21, 2)
    ]
    assert "test" not in gitlab.protected


def serve_production(project: Path, deploy: dict) -> None:
    file = project / "environments" / "production.yaml"
    document = yaml.safe_load(file.read_text("utf-8"))
    document["deploy"] = deploy
    file.write_text(yaml.safe_dump(document), "utf-8")


ON_A_HOST = {
    "target": "host",
    "runner": ["self-hosted", "churn-production"],
    "port": 8080,
    "url": "https://churn.example.com",
    "state_dir": "/srv/churn-model/production",
}


def set_schedule(project: Path, cron: str) -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text("utf-8"))
    params["monitoring"]["schedule"] = cron
    (project / "params.yaml").write_text(yaml.safe_dump(params), "utf-8")


SCHEDULES = "/api/v4/projects/77/pipeline_schedules"


def test_gitlab_sync_keeps_the_monitoring_schedule_while_production_is_on_a_host(project):
    gitlab = FakeGitLab()
    theirs = {"id": 5, "description": "nightly docs", "ref": "main", "cron": "0 1 * * *"}
    gitlab.schedules[5] = dict(theirs)
    serve_production(project, ON_A_HOST)
    set_schedule(project, "17 5 * * *")
    with Server(gitlab) as server:
        first = sync("gitlab", gitlab_env(server))
        assert first.exit_code == 0, first.output
        [created] = [r.body for r in gitlab.requests if r.path == SCHEDULES and r.method == "POST"]
        assert created == {
            "description": "monitoring and continuous training (environments sync)",
            "ref": "main",
            "cron": "17 5 * * *",
            "cron_timezone": "UTC",
            "active": True,
        }

        gitlab.requests.clear()
        assert sync("gitlab", gitlab_env(server)).exit_code == 0
        assert gitlab.writes() == []

        # A new time in params.yaml, and a schedule switched off by hand: put right in place.
        set_schedule(project, "30 2 * * 1-5")
        [mine] = [key for key in gitlab.schedules if key != 5]
        gitlab.schedules[mine]["active"] = False
        assert sync("gitlab", gitlab_env(server)).exit_code == 0
        [edit] = [r for r in gitlab.requests if r.method == "PUT" and "pipeline" in r.path]
        assert (edit.path, edit.body) == (
            f"{SCHEDULES}/{mine}",
            {"cron": "30 2 * * 1-5", "active": True},
        )

        # Production back on the runner of its job: nothing monitors it, the schedule goes.
        serve_production(project, {"target": "local", "port": 3003})
        gitlab.requests.clear()
        assert sync("gitlab", gitlab_env(server)).exit_code == 0
        assert [w for w in gitlab.writes() if "pipeline" in w[1]] == [
            ("DELETE", f"{SCHEDULES}/{mine}")
        ]
    assert gitlab.schedules == {5: theirs}  # the project's own schedule is never touched


def test_gitlab_named_users_each_get_a_rule_and_an_unknown_one_stops_before_any_write(project):
    edit_approval(project, "production", reviewer_users=["alice"])
    gitlab = FakeGitLab()
    with Server(gitlab) as server:
        result = sync("gitlab", gitlab_env(server))
        assert result.exit_code == 0, result.output
        rules = gitlab.protected["production"]["approval_rules"]
        assert [(r["user_id"], r["required_approvals"]) for r in rules] == [(11, 1)]

        edit_approval(project, "production", reviewer_users=["alice", "nobody"])
        gitlab.requests.clear()
        result = sync("gitlab", gitlab_env(server))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "environments sync: environment production: no GitLab user 'nobody' (reviewer_users)"
    )
    assert gitlab.writes() == []


@pytest.mark.parametrize("platform", ["github", "gitlab"])
def test_dry_run_sends_nothing_and_prints_each_request_with_the_token_masked(project, platform):
    edit_approval(project, "production", reviewer_users=["octocat"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    fake = FakeGitHub() if platform == "github" else FakeGitLab()
    with Server(fake) as server:
        env = github_env(server) if platform == "github" else gitlab_env(server)
        result = sync(platform, env, "--dry-run")
    assert result.exit_code == 0, result.output
    assert fake.requests == []
    assert TOKEN not in result.output
    assert "***" in result.output and "dry run: nothing is sent" in result.output
    if platform == "github":
        assert (
            f"PUT {server.url}{ENVIRONMENTS}/production "
            '{"deployment_branch_policy": {"custom_branch_policies": true, "protected_branches": '
            'false}, "prevent_self_review": true, "reviewers": [{"id": "<id of user octocat>", '
            '"type": "User"}], "wait_timer": 0}'
        ) in result.output
        assert f"GET {server.url}/users/octocat  (lookup: not sent in a dry run)" in result.output
    else:
        assert (
            f"POST {server.url}{PROTECTED} "
            '{"approval_rules": [{"required_approvals": 1, "user_id": "<id of user octocat>"}], '
            '"deploy_access_levels": [{"access_level": 40}], "name": "production"}'
        ) in result.output


def test_dry_run_needs_no_token(project):
    result = sync("gitlab", {}, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "GITLAB_TOKEN: not set" in result.output


@pytest.mark.parametrize(
    ("platform", "variable"), [("github", "GITHUB_TOKEN"), ("gitlab", "GITLAB_TOKEN")]
)
def test_a_missing_token_is_one_clear_line_and_nothing_is_sent(project, platform, variable):
    fake = FakeGitHub() if platform == "github" else FakeGitLab()
    with Server(fake) as server:
        env = github_env(server) if platform == "github" else gitlab_env(server)
        result = sync(platform, env | {variable: ""})
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"environments sync: {variable} is not set")
    assert fake.requests == []


def test_a_wrong_token_is_refused_naming_the_request(project):
    gitlab = FakeGitLab()
    with Server(gitlab) as server:
        result = sync("gitlab", gitlab_env(server) | {"GITLAB_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "environments sync: environment test: GET /api/v4/projects/77/protected_environments/test "
        "failed with HTTP 401: 401 Unauthorized"
    )


PREPROD_POLICIES = f"{ENVIRONMENTS}/preprod/deployment-branch-policies"


def test_a_link_to_another_origin_is_not_followed_and_that_origin_gets_no_request(project):
    edit_approval(project, "production", reviewer_teams=["ml-leads"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    elsewhere = FakeGitHub()
    with Server(elsewhere) as other:  # another port of 127.0.0.1: another origin
        github = FakeGitHub(next_link=f"{other.url}{PREPROD_POLICIES}?per_page=100&page=2")
        with Server(github) as server:
            result = sync("github", github_env(server))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"environments sync: environment preprod: GET {PREPROD_POLICIES}: the next page is on "
        f"another origin ({other.url}); not following it with the token"
    )
    assert elsewhere.requests == []
    assert TOKEN not in result.output


def test_a_link_that_loops_stops_after_the_page_cap_with_one_clear_line(project):
    edit_approval(project, "production", reviewer_teams=["ml-leads"])
    edit_approval(project, "preprod", reviewer_users=["octocat"])
    github = FakeGitHub()
    with Server(github) as server:
        github.next_link = f"{server.url}{PREPROD_POLICIES}?per_page=100"  # itself
        result = sync("github", github_env(server))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"environments sync: environment preprod: GET {PREPROD_POLICIES}: still a next page "
        f"after {platforms.MAX_PAGES} pages; stopping (does the Link header loop?)"
    )
    listed = [r for r in github.requests if r.path == PREPROD_POLICIES]
    assert len(listed) == platforms.MAX_PAGES
    assert github.writes()[-1] == ("PUT", f"{ENVIRONMENTS}/preprod")  # nothing after the loop


@pytest.mark.parametrize(
    ("platform", "variable"), [("github", "GITHUB_API_URL"), ("gitlab", "GITLAB_API_URL")]
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["apply", "dry-run"])
def test_a_plain_http_api_url_off_this_machine_is_refused_before_any_request(
    project, platform, variable, dry_run
):
    env = {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": "acme/churn",
        "GITLAB_TOKEN": TOKEN,
        "CI_PROJECT_ID": "77",
        variable: "http://api.example.com",
    }
    result = sync(platform, env, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1
    # One line, and not the line the sync starts with: no client was made, nothing sent.
    assert result.output.strip().splitlines() == [
        "environments sync: the API URL must be https:// (http:// only for 127.0.0.1, ::1 or "
        "localhost), not 'http://api.example.com'"
    ]


@pytest.mark.parametrize(
    "url", ["http://localhost:8080", "http://[::1]:8080/api/v4", "https://gitlab.example.com"]
)
def test_https_and_loopback_http_api_urls_are_accepted(project, monkeypatch, url):
    monkeypatch.setenv("GITLAB_API_URL", url)
    assert platforms.settings("gitlab", dry_run=True).api == url


def test_the_settings_never_show_the_token(project, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/churn")
    setup = platforms.settings("github", dry_run=False)
    assert setup.token == TOKEN
    for shown in (repr(setup), str(setup), f"{setup}", repr({"settings": setup})):
        assert TOKEN not in shown


def test_no_log_line_of_a_sync_carries_the_token(project, caplog):
    gitlab = FakeGitLab()
    with caplog.at_level(logging.DEBUG), Server(gitlab) as server:
        result = sync("gitlab", gitlab_env(server))
    assert result.exit_code == 0, result.output
    assert "HTTP Request" in caplog.text  # httpx logged each request
    assert TOKEN not in caplog.text
    assert TOKEN not in result.output
