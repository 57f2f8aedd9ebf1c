"""GitLab protected environments from environments/*.yaml: who deploys, who approves.

REST API v4, /projects/:id/protected_environments (GitLab Premium): an environment with an
`approval` is protected (Maintainers deploy); a manual one also gets approval rules for
`reviewers` (a semi-auto one does not: its manual job's click is its one step); one without
is unprotected. Existing rules are compared first, so a second sync changes nothing.
`prevent_self_review` maps to the project-wide `allow_pipeline_trigger_approve_deployment`;
pipeline variables are restricted to Maintainers (a pipeline variable could otherwise
override what a deploy job reads). When production is on a lasting host, the pipeline
schedule that runs `.gitlab-ci.yml`'s monitor, retrain and deploy-winner jobs (they run only
in scheduled pipelines) is created on the default branch at `monitoring.schedule`, and kept
there; it is removed when production leaves the host (GitHub's schedule is in monitor.yml).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..deploy.environments import Environment
from .api import Api, SyncFailed

MAINTAINERS = 40


def _key(entry: dict[str, Any]) -> tuple[Any, ...]:
    """What a deploy access level or approval rule grants, ignoring its id."""
    if entry.get("user_id"):
        who = ("user", entry["user_id"])
    elif entry.get("group_id"):
        who = ("group", entry["group_id"])
    else:
        who = ("access_level", entry.get("access_level"))
    return (*who, entry.get("required_approvals"))


class _Ids:
    """User and group ids by username and path, looked up once per sync."""

    def __init__(self, api: Api):
        self.api = api
        self.known: dict[tuple[str, str], int | str] = {}

    def user(self, name: str) -> int | str:
        if ("user", name) not in self.known:
            found = self.api.lookup("/users", params={"username": name})
            if found == []:
                raise SyncFailed(
                    f"environment {self.api.environment}: no GitLab user {name!r} (reviewer_users)"
                )
            self.known["user", name] = found[0]["id"] if found else f"<id of user {name}>"
        return self.known["user", name]

    def group(self, path: str) -> int | str:
        if ("group", path) not in self.known:
            found = self.api.lookup(f"/groups/{quote(path, safe='')}")
            self.known["group", path] = found["id"] if found else f"<id of group {path}>"
        return self.known["group", path]


def wanted(
    environment: Environment, ids: _Ids
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deploy access levels and approval rules the environment file asks for."""
    approval = environment.approval
    assert approval is not None
    levels = [{"access_level": MAINTAINERS}]
    rules: list[dict[str, Any]] = []
    # Semi-auto: the manual job's click, by a Maintainer, is the one step (GitHub has no
    # manual job, so there `reviewers` is what holds it).
    if approval.reviewers and environment.promotion == "manual":
        rules = [
            {"group_id": ids.group(path), "required_approvals": approval.reviewers}
            for path in approval.reviewer_teams
        ] + [
            {"user_id": ids.user(name), "required_approvals": 1} for name in approval.reviewer_users
        ]
        rules = rules or [{"access_level": MAINTAINERS, "required_approvals": approval.reviewers}]
    return levels, rules


def _changes(existing: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries to add, and existing ones to destroy (`_destroy`), to turn one into the other."""
    have = {_key(entry) for entry in existing}
    want = {_key(entry) for entry in wanted}
    return [entry for entry in wanted if _key(entry) not in have] + [
        {"id": entry["id"], "_destroy": True} for entry in existing if _key(entry) not in want
    ]


def sync_environment(
    api: Api,
    project_path: str,
    environment: Environment,
    access: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None,
) -> None:
    """Protect, update or unprotect one environment; `access` is what `wanted` returned."""
    path = f"{project_path}/protected_environments"
    one = f"{path}/{quote(environment.name, safe='')}"
    existing = api.lookup(one, missing_ok=True)
    if environment.approval is None:
        if api.dry_run:
            api.echo("  (DELETE only if it is protected)")
        if existing is not None or api.dry_run:
            api.write("DELETE", one)
        return
    for field, value, why in (
        ("wait_timer_minutes", environment.approval.wait_timer_minutes, "no wait timer"),
        ("branches", environment.approval.branches, "the deploy jobs' rules limit branches"),
    ):
        if value:
            api.echo(f"  note: {field} is not applied on GitLab ({why})")
    assert access is not None
    levels, rules = access
    if existing is None:
        body = {"name": environment.name, "deploy_access_levels": levels, "approval_rules": rules}
        if api.dry_run:
            api.echo("  (POST if not protected yet, else PUT adding and removing the differences)")
        api.write("POST", path, body)
        return
    body = {
        "deploy_access_levels": _changes(existing["deploy_access_levels"], levels),
        "approval_rules": _changes(existing.get("approval_rules", []), rules),
    }
    if body["deploy_access_levels"] or body["approval_rules"]:
        api.write("PUT", one, body)
    else:
        api.echo("  unchanged")


# Who may set variables when running a pipeline: they could otherwise override what a deploy
# job reads (DEPLOY_* are meant for Maintainers, through Run pipeline).
VARIABLES_ROLE = "maintainer"
STRICTER_ROLES = ("maintainer", "owner", "no_one_allowed")


def sync_project(api: Api, project_path: str, environments: list[Environment]) -> None:
    """Project-wide settings, never loosened: only Maintainers set pipeline variables, and
    no one approves their own pipeline if any environment asks."""
    api.environment = "(project settings)"
    api.echo("project settings: pipeline variables (and prevent_self_review, project-wide)")
    project = api.lookup(project_path) or {}
    wanted: dict[str, object] = {}
    if not project.get("restrict_user_defined_variables"):
        wanted["restrict_user_defined_variables"] = True
    if project.get("ci_pipeline_variables_minimum_override_role") not in STRICTER_ROLES:
        wanted["ci_pipeline_variables_minimum_override_role"] = VARIABLES_ROLE
    if any(env.approval and env.approval.prevent_self_review for env in environments) and (
        project.get("allow_pipeline_trigger_approve_deployment", True)
    ):
        wanted["allow_pipeline_trigger_approve_deployment"] = False
    if wanted:
        api.write("PUT", project_path, wanted)
    else:
        api.echo("  unchanged")


# How `environments sync` knows its own pipeline schedule among the project's others.
SCHEDULE_DESCRIPTION = "monitoring and continuous training (environments sync)"


def sync_schedule(api: Api, project_path: str, wanted: dict[str, Any] | None) -> None:
    """Create, update or remove the monitoring schedule; `wanted` is its fields, or None
    when production is on no host (nothing monitors it on a schedule)."""
    api.environment = "(pipeline schedule)"
    api.echo("pipeline schedule: " + ("monitoring" if wanted else "none (production on no host)"))
    path = f"{project_path}/pipeline_schedules"
    found = api.lookup(path, params={"per_page": 100})
    mine = [entry for entry in found or [] if entry.get("description") == SCHEDULE_DESCRIPTION]
    for extra in mine[1 if wanted else 0 :]:
        api.write("DELETE", f"{path}/{extra['id']}")
    if wanted is None:
        return
    if not mine:
        if api.dry_run:
            api.echo("  (POST unless it exists, else PUT the fields that differ)")
        api.write("POST", path, {"description": SCHEDULE_DESCRIPTION, **wanted})
        return
    if changed := {key: value for key, value in wanted.items() if mine[0].get(key) != value}:
        api.write("PUT", f"{path}/{mine[0]['id']}", changed)
    else:
        api.echo("  unchanged")


def schedule(environments: list[Environment], cron: str, branch: str) -> dict[str, Any] | None:
    """The schedule's fields when the last environment (production) is on a lasting host,
    as cicd.monitored decides for the CI files; else None."""
    if not environments or environments[-1].deploy.target != "host":
        return None
    return {"ref": branch, "cron": cron, "cron_timezone": "UTC", "active": True}


def sync(api: Api, environments: list[Environment]) -> None:
    project_path = f"/projects/{api.settings.project}"
    ids = _Ids(api)
    # Every user and group is looked up before anything is written: an unknown one changes nothing.
    access = {}
    for environment in environments:
        api.environment = environment.name
        access[environment.name] = wanted(environment, ids) if environment.approval else None
    for environment in environments:
        api.environment = environment.name
        api.echo(environment.name)
        sync_environment(api, project_path, environment, access[environment.name])
    sync_project(api, project_path, environments)
