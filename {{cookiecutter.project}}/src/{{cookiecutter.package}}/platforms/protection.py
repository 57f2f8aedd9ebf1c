"""Approvals fail closed: a CI deploy to a semi-auto or manual environment first checks,
through the platform's API, that the environment holds the protection its file asks for.

Protection rules live in the platform's settings, which `make environments-sync` applies
from environments/*.yaml; a repository whose settings lack them would deploy with nobody
approving. The check only reads: on GitHub the job's own token (permission `actions:
read`), on GitLab a token that may read protected environments (GITLAB_TOKEN).
"""

from __future__ import annotations

import os
from urllib.parse import quote

from ..deploy.environments import Approval, Environment
from . import gitlab
from .api import Api, SyncFailed, settings


class Unprotected(RuntimeError):
    """The platform does not hold the environment as its file asks; one line."""


def ci_platform() -> str | None:
    """The platform this job runs on, from the variables each one sets."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return "github"
    if os.environ.get("GITLAB_CI") == "true":
        return "gitlab"
    return None


def github_gaps(api: Api, environment: Environment) -> list[str]:
    """What GitHub's environment lacks of what the file and the promotion mode ask for."""
    owner, repo = api.settings.project.split("/")
    base = f"/repos/{quote(owner)}/{quote(repo)}/environments/{quote(environment.name)}"
    found = api.lookup(base, missing_ok=True)
    if found is None:
        return ["the environment does not exist on GitHub"]
    approval = environment.approval or Approval()
    rules = {rule.get("type"): rule for rule in found.get("protection_rules") or []}
    reviewing = rules.get("required_reviewers", {})
    named = {
        (entry.get("type"), (entry.get("reviewer") or {}).get(key))
        for entry in reviewing.get("reviewers") or []
        for key in ("login", "slug")
    }
    wait = int(rules.get("wait_timer", {}).get("wait_timer") or 0)
    gaps = []
    if environment.promotion == "manual" or approval.reviewers:
        if not reviewing.get("reviewers"):
            gaps.append("no required reviewers")
        gaps += [f"{user} is not a required reviewer" for user in approval.reviewer_users
                 if ("User", user) not in named]  # fmt: skip
        gaps += [f"team {team} is not a required reviewer" for team in approval.reviewer_teams
                 if ("Team", team) not in named]  # fmt: skip
        if approval.prevent_self_review and not reviewing.get("prevent_self_review"):
            gaps.append("self-review is allowed")
    if environment.promotion == "semi-auto" and not reviewing.get("reviewers") and wait == 0:
        gaps.append("nothing holds the job: no required reviewers and no wait timer")
    if approval.wait_timer_minutes > wait:
        gaps.append(f"wait timer {wait} min, the file asks {approval.wait_timer_minutes}")
    if approval.branches:
        policy = found.get("deployment_branch_policy") or {}
        if not policy.get("custom_branch_policies"):
            gaps.append(f"deploys are not limited to {', '.join(approval.branches)}")
        else:
            listed = api.lookup_pages(f"{base}/deployment-branch-policies", "branch_policies")
            extra = sorted({p["name"] for p in listed or []} - set(approval.branches))
            if extra:
                gaps.append(f"the branch policy also lets {', '.join(extra)} deploy")
    return gaps


def gitlab_gaps(api: Api, environment: Environment) -> list[str]:
    """What GitLab's protected environment lacks: protection itself (who may run the
    manual job: its one click, for semi-auto), for manual the approval rules, and the
    project's restriction of pipeline variables to Maintainers."""
    project = f"/projects/{api.settings.project}"
    found = api.lookup(f"{project}/protected_environments/{quote(environment.name, safe='')}",
                       missing_ok=True)  # fmt: skip
    if found is None:
        return ["the environment is not protected on GitLab"]
    if environment.approval is None:
        return ["its file has no approval to check against: add one"]
    levels, rules = gitlab.wanted(environment, gitlab._Ids(api))
    have_levels = {gitlab._key(entry) for entry in found.get("deploy_access_levels") or []}
    have_rules = {gitlab._key(entry) for entry in found.get("approval_rules") or []}
    gaps = [f"deploy access {gitlab._key(level)[:2]} is missing" for level in levels
            if gitlab._key(level) not in have_levels]  # fmt: skip
    gaps += [f"approval rule {gitlab._key(rule)} is missing" for rule in rules
             if gitlab._key(rule) not in have_rules]  # fmt: skip
    project_settings = api.lookup(project) or {}
    self_review = project_settings.get("allow_pipeline_trigger_approve_deployment", True)
    if (
        environment.approval.prevent_self_review
        and environment.promotion == "manual"
        and self_review
    ):
        gaps.append("whoever started the pipeline may approve it (self-review)")
    # A pipeline variable set by anyone could override what this job reads.
    role = project_settings.get("ci_pipeline_variables_minimum_override_role")
    if (
        not project_settings.get("restrict_user_defined_variables")
        or role not in gitlab.STRICTER_ROLES
    ):
        gaps.append("pipeline variables are not restricted to Maintainers")
    return gaps


def verify(environment: Environment, platform: str | None = None) -> str:
    """Raise Unprotected unless the platform holds `environment` as its file asks; say what
    was checked. Automatic environments need no protection."""
    if environment.promotion == "auto":
        return f"{environment.name} is automatic: no approval to check"
    platform = platform or ci_platform()
    fix = f"run `make environments-sync PLATFORM={platform or 'github|gitlab'}`"
    if platform is None:
        raise Unprotected(
            f"{environment.name} is {environment.promotion}: a CI deploy checks its approval "
            "on GitHub Actions or GitLab CI, and this is neither"
        )
    try:
        setup = settings(platform, dry_run=False)
    except SyncFailed as error:
        raise Unprotected(
            f"cannot check {environment.name}'s approval on {platform}: {error}"
        ) from None
    api = Api(setup, dry_run=False, echo=lambda _line: None)
    api.environment = environment.name
    try:
        gaps = (github_gaps if platform == "github" else gitlab_gaps)(api, environment)
    except SyncFailed as error:
        raise Unprotected(f"cannot check {environment.name}'s approval: {error}") from None
    finally:
        api.close()
    if gaps:
        raise Unprotected(
            f"{environment.name} is {environment.promotion} but {platform} does not hold it as "
            f"environments/{environment.name}.yaml asks ({'; '.join(gaps)}): {fix}, then re-run"
        )
    return f"{environment.name}: {platform} holds it as environments/{environment.name}.yaml asks"
