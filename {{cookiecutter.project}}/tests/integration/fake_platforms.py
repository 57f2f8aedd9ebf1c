"""Local stand-ins for the GitHub and GitLab REST APIs that `environments sync` calls.

Each one is a real HTTP server on 127.0.0.1 that checks every request (method, path,
authentication headers, JSON body fields and types), keeps state like the platform does
(so a second sync sees what the first wrote), answers with the platform's status codes
and response shapes, and records every request for the tests to assert on.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "test-token-Zx81"


@dataclass
class Recorded:
    method: str
    path: str
    body: object


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _require(condition: bool, message: str, status: int = 422) -> None:
    if not condition:
        raise Refused(status, message)


@dataclass
class FakePlatform:
    requests: list[Recorded] = field(default_factory=list)
    next_id: int = 100

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def writes(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests if r.method != "GET"]

    def handle(self, method, path, query, headers, body) -> tuple[int, object, dict]:
        raise NotImplementedError


@dataclass
class FakeGitHub(FakePlatform):
    """GitHub's environments API for one repository (acme/churn unless told)."""

    repository: str = "acme/churn"
    users: dict = field(default_factory=lambda: {"octocat": 1, "outsider": 7})
    teams: dict = field(default_factory=lambda: {"ml-leads": 42})
    # Users with read access to the repository; only they may be reviewers.
    collaborators: set = field(default_factory=lambda: {1})
    environments: dict = field(default_factory=dict)
    policies: dict = field(default_factory=dict)  # environment -> [{id, name, type}]
    # Most items per page, whatever per_page asks: small values exercise the Link header.
    page_limit: int = 100
    # A hostile or broken server: every listing page links to this URL as its next page
    # (answering 429 after 1000 requests, so a client that never stops fails, not hangs).
    next_link: str | None = None

    def handle(self, method, path, query, headers, body):
        _require(headers.get("Authorization") == f"Bearer {TOKEN}", "Bad credentials", 401)
        _require(headers.get("Accept") == "application/vnd.github+json", "bad Accept", 415)
        _require(headers.get("X-GitHub-Api-Version") == "2022-11-28", "bad API version", 400)
        if match := re.fullmatch(r"/users/([^/]+)", path):
            _require(method == "GET" and match[1] in self.users, "Not Found", 404)
            return 200, {"login": match[1], "id": self.users[match[1]], "type": "User"}, {}
        owner = self.repository.split("/")[0]
        if match := re.fullmatch(rf"/orgs/{re.escape(owner)}/teams/([^/]+)", path):
            _require(method == "GET" and match[1] in self.teams, "Not Found", 404)
            return 200, {"slug": match[1], "id": self.teams[match[1]]}, {}
        match = re.fullmatch(
            rf"/repos/{re.escape(self.repository)}/environments/([^/]+)"
            r"(/deployment-branch-policies)?(?:/(\d+))?",
            path,
        )
        _require(match is not None, "Not Found", 404)
        name, policies, policy_id = match[1], match[2], match[3]
        if not policies and method == "GET":
            _require(name in self.environments, "Not Found", 404)
            return 200, self.get_environment(name), {}
        if not policies:
            _require(method == "PUT", "Not Found", 404)
            return 200, self.put_environment(name, body), {}
        _require(name in self.environments, "Not Found", 404)
        existing = self.policies.setdefault(name, [])
        if method == "GET" and policy_id is None:
            per_page = min(int(query["per_page"][0]), self.page_limit)
            page = int(query.get("page", ["1"])[0])
            shown = existing[(page - 1) * per_page : page * per_page]
            links = {}
            if page * per_page < len(existing):
                following = f"http://{headers['Host']}{path}?per_page={per_page}&page={page + 1}"
                links["Link"] = f'<{following}>; rel="next"'
            if self.next_link is not None:
                _require(len(self.requests) <= 1000, "followed Link for 1000 requests", 429)
                links["Link"] = f'<{self.next_link}>; rel="next"'
            return 200, {"total_count": len(existing), "branch_policies": shown}, links
        if method == "POST" and policy_id is None:
            _require(
                set(body) == {"name", "type"} and body["type"] in ("branch", "tag"),
                "Invalid request",
            )
            # GitHub refuses a duplicate: a sync that adds policies twice fails here.
            _require(
                all(p["name"] != body["name"] or p["type"] != body["type"] for p in existing),
                "already exists",
                303,
            )
            policy = {
                "id": self.new_id(),
                "node_id": "x",
                "name": body["name"],
                "type": body["type"],
            }
            existing.append(policy)
            return 200, policy, {}
        if method == "DELETE" and policy_id is not None:
            _require(any(p["id"] == int(policy_id) for p in existing), "Not Found", 404)
            self.policies[name] = [p for p in existing if p["id"] != int(policy_id)]
            return 204, None, {}
        raise Refused(404, "Not Found")

    def get_environment(self, name: str) -> dict:
        """The environment as GitHub's GET shows it: its settings as protection rules."""
        stored = self.environments[name]
        logins = {id_: login for login, id_ in self.users.items()}
        slugs = {id_: slug for slug, id_ in self.teams.items()}
        rules = []
        if stored["reviewers"]:
            reviewers = [
                {"type": "User", "reviewer": {"login": logins[r["id"]], "id": r["id"]}}
                if r["type"] == "User"
                else {"type": "Team", "reviewer": {"slug": slugs[r["id"]], "id": r["id"]}}
                for r in stored["reviewers"]
            ]
            rules.append(
                {
                    "id": 1,
                    "type": "required_reviewers",
                    "prevent_self_review": bool(stored["prevent_self_review"]),
                    "reviewers": reviewers,
                }
            )
        if stored["wait_timer"]:
            rules.append({"id": 2, "type": "wait_timer", "wait_timer": stored["wait_timer"]})
        policy = stored["deployment_branch_policy"]
        if policy:
            rules.append({"id": 3, "type": "branch_policy"})
        return {
            "id": 9,
            "name": name,
            "protection_rules": rules,
            "deployment_branch_policy": policy,
        }

    def put_environment(self, name: str, body: object) -> dict:
        fields = {"wait_timer", "prevent_self_review", "reviewers", "deployment_branch_policy"}
        _require(isinstance(body, dict) and set(body) <= fields, f"Invalid request: {body}")
        _require(
            isinstance(body.get("wait_timer", 0), int) and 0 <= body.get("wait_timer", 0) <= 43200,
            "wait_timer",
        )
        _require(isinstance(body.get("prevent_self_review", False), bool), "prevent_self_review")
        reviewers = body.get("reviewers") or []
        _require(len(reviewers) <= 6, "too many reviewers")
        for reviewer in reviewers:
            _require(
                set(reviewer) == {"type", "id"} and isinstance(reviewer["id"], int),
                "Invalid reviewer",
            )
            known = self.teams.values() if reviewer["type"] == "Team" else self.users.values()
            _require(
                reviewer["type"] in ("User", "Team") and reviewer["id"] in known, "Invalid reviewer"
            )
            if reviewer["type"] == "User":
                _require(
                    reviewer["id"] in self.collaborators,
                    "Reviewers must have at least read access to the repository.",
                )
        policy = body.get("deployment_branch_policy")
        if policy is not None:
            _require(
                set(policy) == {"protected_branches", "custom_branch_policies"}, "Invalid policy"
            )
            _require(
                policy["protected_branches"] != policy["custom_branch_policies"],
                "exactly one of them",
            )
        self.environments[name] = {key: body.get(key) for key in sorted(fields)}
        return {"name": name, **self.environments[name]}


@dataclass
class FakeGitLab(FakePlatform):
    """GitLab's protected environments API for project 77 (path acme/churn)."""

    users: dict = field(default_factory=lambda: {"alice": 11})
    groups: dict = field(default_factory=lambda: {"acme/ml-leads": 21})
    protected: dict = field(default_factory=dict)
    schedules: dict = field(default_factory=dict)  # pipeline schedules by id
    project: dict = field(
        default_factory=lambda: {
            "id": 77,
            "allow_pipeline_trigger_approve_deployment": True,
            "restrict_user_defined_variables": False,
            "ci_pipeline_variables_minimum_override_role": "developer",
        }
    )

    def handle(self, method, path, query, headers, body):
        _require(headers.get("PRIVATE-TOKEN") == TOKEN, "401 Unauthorized", 401)
        _require(path.startswith("/api/v4/"), "404 Not Found", 404)
        path = path.removeprefix("/api/v4")
        if path == "/users" and method == "GET":
            name = query.get("username", [""])[0]
            return (
                200,
                [{"id": self.users[name], "username": name}] if name in self.users else [],
                {},
            )
        if match := re.fullmatch(r"/groups/([^/]+)", path):
            full_path = unquote(match[1])
            _require(method == "GET" and full_path in self.groups, "404 Group Not Found", 404)
            return 200, {"id": self.groups[full_path], "full_path": full_path}, {}
        _require(
            path.startswith("/projects/77") or path.startswith("/projects/acme%2Fchurn"),
            "404 Project Not Found",
            404,
        )
        path = re.sub(r"^/projects/[^/]+", "", path)
        if path == "":
            if method == "PUT":
                _require(set(body) <= set(self.project) - {"id"}, f"unknown fields {body}", 400)
                self.project.update(body)
            return 200, self.project, {}
        if path.startswith("/pipeline_schedules"):
            return self.handle_schedule(method, path.removeprefix("/pipeline_schedules"), body)
        if path == "/protected_environments" and method == "POST":
            _require(
                set(body) <= {"name", "deploy_access_levels", "approval_rules"},
                "unknown fields",
                400,
            )
            _require(bool(body.get("deploy_access_levels")), "deploy_access_levels is missing", 400)
            _require(
                body["name"] not in self.protected, "Protected environment already exists", 409
            )
            self.protected[body["name"]] = {
                "name": body["name"],
                "deploy_access_levels": [
                    self.entry(level) for level in body["deploy_access_levels"]
                ],
                "approval_rules": [
                    self.entry(rule, rule=True) for rule in body.get("approval_rules", [])
                ],
            }
            return 201, self.protected[body["name"]], {}
        match = re.fullmatch(r"/protected_environments/([^/]+)", path)
        _require(match is not None, "404 Not Found", 404)
        name = unquote(match[1])
        _require(name in self.protected, "404 Not found", 404)
        if method == "GET":
            return 200, self.protected[name], {}
        if method == "DELETE":
            del self.protected[name]
            return 204, None, {}
        _require(
            method == "PUT" and set(body) <= {"deploy_access_levels", "approval_rules"},
            "bad PUT",
            400,
        )
        for key in ("deploy_access_levels", "approval_rules"):
            entries = self.protected[name][key]
            for change in body.get(key, []):
                if change.get("_destroy"):
                    _require(
                        any(e["id"] == change["id"] for e in entries),
                        f"{key} {change['id']} not found",
                        404,
                    )
                    entries[:] = [e for e in entries if e["id"] != change["id"]]
                else:
                    entries.append(self.entry(change, rule=key == "approval_rules"))
        _require(
            bool(self.protected[name]["deploy_access_levels"]), "deploy_access_levels is empty", 422
        )
        return 200, self.protected[name], {}

    SCHEDULE_FIELDS = {"description", "ref", "cron", "cron_timezone", "active"}

    def handle_schedule(self, method, path, body):
        """/pipeline_schedules: list, create; /pipeline_schedules/:id: edit, delete."""
        if path == "" and method == "GET":
            return 200, list(self.schedules.values()), {}
        if body is not None:
            _require(set(body) <= self.SCHEDULE_FIELDS, f"unknown fields {body}", 400)
            cron = body.get("cron", "* * * * *")
            _require(len(str(cron).split()) == 5, "cron is invalid", 400)
        if path == "" and method == "POST":
            _require({"description", "ref", "cron"} <= set(body), "missing fields", 400)
            new = {"id": self.new_id(), "cron_timezone": "UTC", "active": True, **body}
            self.schedules[new["id"]] = new
            return 201, new, {}
        match = re.fullmatch(r"/(\d+)", path)
        _require(match is not None and int(match[1]) in self.schedules, "404 Not found", 404)
        schedule_id = int(match[1])
        if method == "DELETE":
            return 200, self.schedules.pop(schedule_id), {}
        _require(method == "PUT", "405 Method Not Allowed", 405)
        self.schedules[schedule_id].update(body)
        return 200, self.schedules[schedule_id], {}

    def entry(self, given: dict, rule: bool = False) -> dict:
        """An access level or approval rule as GitLab stores it: exactly one grantee, an id."""
        allowed = {"access_level", "user_id", "group_id"} | (
            {"required_approvals"} if rule else set()
        )
        _require(set(given) <= allowed, f"unknown fields {given}", 400)
        grantees = [key for key in ("access_level", "user_id", "group_id") if key in given]
        _require(len(grantees) == 1, "exactly one of access_level, user_id, group_id", 400)
        _require(
            all(isinstance(given[key], int) for key in given), "ids and levels are integers", 400
        )
        _require(given.get("access_level", 40) in (30, 40, 60), "invalid access_level", 400)
        _require(given.get("user_id", 11) in self.users.values(), "user not found", 404)
        _require(given.get("group_id", 21) in self.groups.values(), "group not found", 404)
        stored = {
            "id": self.new_id(),
            "access_level": given.get("access_level", 40),
            "user_id": given.get("user_id"),
            "group_id": given.get("group_id"),
            "group_inheritance_type": 0,
        }
        if rule:
            _require(
                given.get("required_approvals", 1) >= 1, "required_approvals must be positive", 400
            )
            stored["required_approvals"] = given.get("required_approvals", 1)
        return stored


class Server:
    """Serves a fake platform on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, platform: FakePlatform):
        self.platform = platform
        handler = type("Handler", (_Handler,), {"platform": platform})
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.shutdown()
        self.http.server_close()


class _Handler(BaseHTTPRequestHandler):
    platform: FakePlatform

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
            if raw:
                _require(self.headers.get("Content-Type") == "application/json", "not JSON", 415)
            self.platform.requests.append(Recorded(self.command, url.path, body))
            status, payload, headers = self.platform.handle(
                self.command, url.path, parse_qs(url.query), self.headers, body
            )
        except Refused as refused:
            status, payload, headers = refused.status, {"message": refused.message}, {}
        except (ValueError, KeyError, TypeError) as error:
            status, payload, headers = 400, {"message": f"malformed request: {error}"}, {}
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, *args) -> None:  # keep test output clean
        pass
