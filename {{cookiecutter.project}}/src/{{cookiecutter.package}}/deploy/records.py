"""Deployment records: an append-only JSON-lines history, plus MLflow registry aliases.

The history is the source of truth for "verified in <env>": a line is only ever added,
never rewritten, so a rollback is a new line and every past deploy stays visible.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ..config import PROJECT, Paths

ACTOR_VARIABLES = ("GITLAB_USER_LOGIN", "GITHUB_ACTOR", "USER")


def history_file(paths: Paths) -> Path:
    return paths.state / "history.jsonl"


def actor() -> str:
    """Who deploys: the CI user when run by CI, else the local user."""
    for variable in ACTOR_VARIABLES:
        if value := os.environ.get(variable):
            return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append(paths: Paths, record: dict) -> dict:
    """Add one line to the history and flush it to disk before returning."""
    file = history_file(paths)
    file.parent.mkdir(parents=True, exist_ok=True)
    # A line cut short by an interrupted write must not swallow this one.
    cut_short = file.exists() and file.stat().st_size and not file.read_bytes().endswith(b"\n")
    with open(file, "a", encoding="utf-8") as handle:
        handle.write(("\n" if cut_short else "") + json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return record


def read(paths: Paths) -> list[dict]:
    """Every record, oldest first; a line cut short by an interruption is skipped."""
    file = history_file(paths)
    if not file.exists():
        return []
    records = []
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def successes(paths: Paths, environment: str) -> list[dict]:
    """The deploys to `environment` whose every check passed, oldest first."""
    return [r for r in read(paths) if r.get("environment") == environment and r.get("success")]


def verified(paths: Paths, environment: str, bento: str) -> bool:
    """Whether `bento` was deployed to `environment` and passed its checks there."""
    return any(record["bento"] == bento for record in successes(paths, environment))


def current(paths: Paths, environment: str) -> dict | None:
    """The last successful deploy to `environment`: what it serves."""
    done = successes(paths, environment)
    return done[-1] if done else None


def previous(paths: Paths, environment: str) -> dict | None:
    """The last successful deploy of a bento other than the one serving now."""
    done = successes(paths, environment)
    if not done:
        return None
    serving = done[-1]["bento"]
    return next((r for r in reversed(done) if r["bento"] != serving), None)


def tag_registry(paths: Paths, record: dict) -> None:
    """Alias the model version after the environment and tag it with the deploy record."""
    from .. import registry

    version = record.get("model_version")
    if version in (None, "None", ""):
        return
    client = registry.client(paths)
    environment = record["environment"]
    client.set_registered_model_alias(PROJECT, environment, str(version))
    tags = {
        "bento": record["bento"],
        "git_commit": record["git_commit"],
        "gates": json.dumps(record["checks"], sort_keys=True),
        "actor": record["actor"],
        "time": record["time"],
        "action": record["action"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(PROJECT, str(version), f"deploy.{environment}.{key}", value)
