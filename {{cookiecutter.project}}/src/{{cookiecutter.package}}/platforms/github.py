"""GitHub environments from environments/*.yaml: reviewers, self-review, wait timer, branches.

REST API: PUT /repos/{owner}/{repo}/environments/{name} sets the protection rules; the
deployment branch policies under it are then made to match `branches` exactly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..deploy.environments import Environment
from .api import Api, SyncFailed

# GitHub accepts at most six required reviewers per environment.
MAX_REVIEWERS = 6


def check(environment: Environment) -> None:
    """Refuse, before any request, an approval GitHub cannot express."""
    approval = environment.approval
    if approval is None or approval.reviewers == 0:
        return
    names = len(approval.reviewer_users) + len(approval.reviewer_teams)
    where = f"environments/{environment.name}.yaml: approval"
    if names == 0:
        raise SyncFailed(
            f"{where}: reviewers is {approval.reviewers} but GitHub needs named reviewers: "
            "list logins in reviewer_users or team slugs in reviewer_teams"
        )
    if names > MAX_REVIEWERS:
        raise SyncFailed(f"{where}: GitHub allows at most {MAX_REVIEWERS} reviewers, not {names}")


class _Ids:
    """User and team ids by login and slug, looked up once per sync."""

    def __init__(self, api: Api, owner: str):
        self.api, self.owner = api, owner
        self.known: dict[tuple[str, str], int | str] = {}

    def reviewer(self, kind: str, name: str) -> dict[str, Any]:
        if (kind, name) not in self.known:
            path = (
                f"/users/{quote(name)}"
                if kind == "User"
                else f"/orgs/{quote(self.owner)}/teams/{quote(name)}"
            )
            found = self.api.lookup(path)
            self.known[kind, name] = found["id"] if found else f"<id of {kind.lower()} {name}>"
        return {"type": kind, "id": self.known[kind, name]}


def environment_body(environment: Environment, ids: _Ids) -> dict[str, Any]:
    """The PUT body: every rule set explicitly, so removing one from the file removes it."""
    approval = environment.approval
    if approval is None:
        return {
            "wait_timer": 0,
            "prevent_self_review": False,
            "reviewers": [],
            "deployment_branch_policy": None,
        }
    reviewers = []
    if approval.reviewers:
        reviewers = [ids.reviewer("User", name) for name in approval.reviewer_users] + [
            ids.reviewer("Team", name) for name in approval.reviewer_teams
        ]
    branch_policy = (
        {"protected_branches": False, "custom_branch_policies": True} if approval.branches else None
    )
    return {
        "wait_timer": approval.wait_timer_minutes,
        "prevent_self_review": approval.prevent_self_review,
        "reviewers": reviewers,
        "deployment_branch_policy": branch_policy,
    }


def sync_branch_policies(api: Api, base: str, branches: list[str]) -> None:
    """Add the missing branch policies and delete every other one."""
    path = f"{base}/deployment-branch-policies"
    existing = api.lookup_pages(path, "branch_policies")
    if existing is None:  # dry run: the listing was not fetched
        for branch in branches:
            api.write("POST", path, {"name": branch, "type": "branch"})
        api.echo(f"  DELETE {api.url(path)}/<id>  for each other policy the listing shows")
        return
    present = {policy["name"] for policy in existing if policy.get("type", "branch") == "branch"}
    for branch in branches:
        if branch not in present:
            api.write("POST", path, {"name": branch, "type": "branch"})
    for policy in existing:
        if policy["name"] not in branches or policy.get("type", "branch") != "branch":
            api.write("DELETE", f"{path}/{policy['id']}")


def sync(api: Api, environments: list[Environment]) -> None:
    owner, repo = api.settings.project.split("/")
    ids = _Ids(api, owner)
    # Every reviewer is looked up before anything is written: an unknown name changes nothing.
    bodies = {}
    for environment in environments:
        api.environment = environment.name
        bodies[environment.name] = environment_body(environment, ids)
    for environment in environments:
        api.environment = environment.name
        approval = environment.approval
        api.echo(environment.name)
        if approval and approval.reviewers > 1:
            api.echo(
                f"  note: GitHub releases the job on one approval; reviewers: "
                f"{approval.reviewers} is enforced on GitLab only"
            )
        if environment.promotion == "semi-auto" and not (
            approval and (approval.reviewers or approval.wait_timer_minutes)
        ):
            api.echo("  note: no reviewer or wait timer: GitHub runs this job without a click")
        base = f"/repos/{quote(owner)}/{quote(repo)}/environments/{quote(environment.name)}"
        api.write("PUT", base, bodies[environment.name])
        if approval and approval.branches:
            sync_branch_policies(api, base, approval.branches)
