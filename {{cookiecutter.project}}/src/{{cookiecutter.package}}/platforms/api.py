"""The platforms' REST API client, shared by GitHub and GitLab sync and the protection check.

Tokens come only from environment variables and are never printed. A dry run prints every
request and sends none, not even lookups: ids it would look up (users, teams, existing
rules) are shown as `<...>` placeholders.

The token goes only to the API's own origin: the API URL must be https:// (http:// only on
this machine's loopback), and a `Link: next` header is followed only to that same origin.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

PLATFORMS = ("github", "gitlab")
# Pages of one listing followed at most: a Link header that loops stops here.
MAX_PAGES = 100


class SyncFailed(RuntimeError):
    """A missing setting or a refused request; the message is one line."""


@dataclass(frozen=True)
class Settings:
    """Where a platform's API is and how to authenticate, read from the environment."""

    platform: str
    api: str  # base URL, no trailing slash
    project: str  # GitHub `owner/repo`; GitLab project id or URL-encoded path
    token: str | None = field(repr=False)  # never in a repr, str or traceback
    token_variable: str
    auth_header: str
    auth_scheme: str  # "Bearer " for GitHub, "" for GitLab's PRIVATE-TOKEN

    def headers(self) -> dict[str, str]:
        headers = {self.auth_header: f"{self.auth_scheme}{self.token}"}
        if self.platform == "github":
            headers |= {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        return headers


def _variable(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name, "").strip()), None)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port: where a request (and its token) goes."""
    return url.scheme, url.host, url.port


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(api: str) -> None:
    """Refuse an API URL the token must not be sent to: anything but https:// off loopback."""
    url = httpx.URL(api)
    if url.userinfo:
        raise SyncFailed("the API URL must not carry credentials: export the token instead")
    if url.scheme == "https" and url.host:
        return
    if url.scheme == "http" and _is_loopback(url.host):
        return  # never leaves this machine: local stand-ins of the API
    raise SyncFailed(
        f"the API URL must be https:// (http:// only for 127.0.0.1, ::1 or localhost), not {api!r}"
    )


def settings(platform: str, dry_run: bool) -> Settings:
    """The platform's API, project and token; a missing one is a one-line error."""
    if platform not in PLATFORMS:
        raise SyncFailed(f"unknown platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
    if platform == "github":
        api = _variable("GITHUB_API_URL") or "https://api.github.com"
        project, token_variable = _variable("GITHUB_REPOSITORY"), "GITHUB_TOKEN"
        missing_project = "GITHUB_REPOSITORY is not set: export it as owner/repo"
        if project is not None and project.count("/") != 1:
            raise SyncFailed(f"GITHUB_REPOSITORY must be owner/repo, not {project!r}")
        header, scheme = "Authorization", "Bearer "
    else:
        api = _variable("CI_API_V4_URL", "GITLAB_API_URL") or "https://gitlab.com/api/v4"
        project = _variable("CI_PROJECT_ID", "GITLAB_PROJECT")
        project = quote(project, safe="") if project else None
        token_variable = "GITLAB_TOKEN"
        missing_project = (
            "neither CI_PROJECT_ID nor GITLAB_PROJECT is set: "
            "export the project id or its path (group/project)"
        )
        header, scheme = "PRIVATE-TOKEN", ""
    token = _variable(token_variable)
    if not dry_run and token is None:
        raise SyncFailed(
            f"{token_variable} is not set: export a token that may administer the "
            f"{'repository' if platform == 'github' else 'project'} (see docs/ci.md, One-time setup)"
        )
    if project is None:
        if not dry_run:
            raise SyncFailed(missing_project)
        project = "OWNER/REPO" if platform == "github" else "PROJECT"
    check_api_url(api)
    return Settings(platform, api.rstrip("/"), project, token, token_variable, header, scheme)


class Api:
    """Sends requests and logs each one; in a dry run only prints them."""

    def __init__(self, settings: Settings, dry_run: bool, echo: Callable[[str], None]):
        self.settings, self.dry_run, self.echo = settings, dry_run, echo
        self.environment = ""  # named in every error
        self.http = None
        if not dry_run:
            self.http = httpx.Client(
                base_url=settings.api, headers=settings.headers(), timeout=30.0
            )

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    def url(self, path: str) -> str:
        return f"{self.settings.api}{path}"

    # Any: the platforms' JSON answers, objects or lists by endpoint.
    def lookup(
        self, path: str, params: dict[str, Any] | None = None, missing_ok: bool = False
    ) -> Any:
        """GET `path`: JSON, None if absent and `missing_ok`; in a dry run, not sent: None."""
        if self.dry_run:
            self.echo(f"  GET {self.url(path)}  (lookup: not sent in a dry run)")
            return None
        return self._send("GET", path, None, params, missing_ok)

    def lookup_pages(self, path: str, key: str) -> list[dict[str, Any]] | None:
        """Every item of a paginated GitHub list (`key` holds the items), following Link.

        At most MAX_PAGES pages, and only within the API's origin: the client sends the
        token with every request, so a `next` elsewhere would hand it to that host.
        """
        if self.dry_run:
            self.echo(f"  GET {self.url(path)}  (lookup: not sent in a dry run)")
            return None
        items: list[dict[str, Any]] = []
        url = path
        params: dict[str, Any] | None = {"per_page": 100}
        for _ in range(MAX_PAGES):
            response = self._request("GET", url, None, params)
            items.extend(response.json()[key])
            following = response.links.get("next", {}).get("url")
            if following is None:
                return items
            url, params = self._same_origin(response.url.join(following), path), None
        raise SyncFailed(
            f"environment {self.environment}: GET {path}: still a next page after "
            f"{MAX_PAGES} pages; stopping (does the Link header loop?)"
        )

    def _same_origin(self, url: httpx.URL, path: str) -> str:
        """`url` if it is on the API's origin, else a one-line refusal."""
        if _origin(url) != _origin(httpx.URL(self.settings.api)):
            raise SyncFailed(
                f"environment {self.environment}: GET {path}: the next page is on another "
                f"origin ({url.scheme}://{url.netloc.decode()}); not following it with the token"
            )
        return str(url)

    def write(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """PUT/POST/DELETE `path`; in a dry run, printed with its body and not sent."""
        shown = f" {json.dumps(body, sort_keys=True)}" if body is not None else ""
        if self.dry_run:
            self.echo(f"  {method} {self.url(path)}{shown}")
            return None
        result = self._send(method, path, body)
        self.echo(f"  {method} {self.url(path)}{shown} -> done")
        return result

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        response = self._request(method, path, body, params, missing_ok)
        if response.status_code == 404 and missing_ok:
            return None
        return response.json() if response.content else None

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> httpx.Response:
        assert self.http is not None
        shown = urlsplit(path if "://" in path else self.url(path)).path
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as error:
            raise SyncFailed(
                f"environment {self.environment}: {method} {shown}: {type(error).__name__}: {error}"
            ) from None
        if response.is_error and not (missing_ok and response.status_code == 404):
            raise SyncFailed(
                f"environment {self.environment}: {method} {shown} failed with HTTP "
                f"{response.status_code}{_reason(response)}"
            )
        return response


def _reason(response: httpx.Response) -> str:
    """The platform's own message, on one line, if the body has one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return f": {' '.join(str(message).split())}" if message else ""
