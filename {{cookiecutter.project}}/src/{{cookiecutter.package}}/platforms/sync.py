"""Environments as code: apply each environments/*.yaml `approval` to GitHub or GitLab.

Protection rules (required reviewers, wait timers, branch policies, protected environments)
live in the platform's settings, not in CI files, so `environments sync` sets them through
the platform's REST API (api.py).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import cicd
from ..config import Paths
from ..deploy.environments import Environment, load_all
from . import github, gitlab
from .api import Api, settings


def sync(
    paths: Paths, platform: str, dry_run: bool = False, echo: Callable[[str], None] = print
) -> list[str]:
    """Apply every environment's approval to `platform`; the environments' names, in order.

    Every environment is checked against the platform's limits before any request is sent.
    """
    environments: dict[str, Environment] = load_all(paths)
    module = github if platform == "github" else gitlab
    setup = settings(platform, dry_run)
    if platform == "github":  # GitLab can express every approval
        for environment in environments.values():
            github.check(environment)
    api = Api(setup, dry_run, echo)
    masked = f"{setup.auth_header}: {setup.auth_scheme}***" if setup.token else "no token"
    echo(
        f"{platform} {setup.project} at {setup.api} ({setup.token_variable}: "
        f"{'set' if setup.token else 'not set'}; requests carry {masked})"
        + ("\ndry run: nothing is sent" if dry_run else "")
    )
    try:
        module.sync(api, list(environments.values()))
        if platform == "gitlab":  # the cron and branch the CI files are rendered with
            cron, branch = cicd.schedule(paths.root), cicd.DEFAULT_BRANCH
            wanted = gitlab.schedule(list(environments.values()), cron, branch)
            gitlab.sync_schedule(api, f"/projects/{setup.project}", wanted)
    finally:
        api.close()
    return list(environments)
