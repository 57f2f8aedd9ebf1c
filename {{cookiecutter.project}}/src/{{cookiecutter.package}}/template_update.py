"""Keep the project current with the template it was baked from (`make template-check`,
`make template-update`).

.cruft.json records the template's URL (or path), the commit baked and the answers. An update
is cruft's: it renders the template at the recorded commit and at the new one with the same
answers and applies the difference as a three-way merge (`git apply -3`), so your own edits
stay and a clash is left as conflict markers, never dropped. Then what the template's files
derive is made anew: the CI files from the updated renderer and your environments/, uv.lock
when pyproject.toml changed (both skipped by cruft: pyproject.toml's [tool.cruft]).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE = ".cruft.json"
# A template that does not answer within this is reported as unreachable, not waited for.
REACH_TIMEOUT = 30
# A git URL (https://, ssh://, git://, file://) or scp-like address (git@host:org/repo).
URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.I)
LINK = (
    'set "template" (its git URL) and "commit" (the template commit it was baked from) in '
    f"{STATE}, commit that, and run this again"
)


class TemplateError(Exception):
    """Why a command stopped, in one line, with what to do."""


class Unreachable(TemplateError):
    """git could not reach the template (offline, private, or a path on another machine)."""


@dataclass(frozen=True)
class Updated:
    """What an update did: the commits before and after, the files it changed."""

    template: str
    before: str
    after: str
    changed: list[str]
    relocked: bool


def git(
    root: Path, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run git in `root`; never prompts for credentials (CI has no one to answer)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=check, env=env,
        timeout=timeout,
    )  # fmt: skip


def load_state(root: Path) -> dict[str, Any]:
    """cruft's state; TemplateError when the project is not linked to a template."""
    path = root / STATE
    if not path.exists():
        raise TemplateError(
            f"no {STATE}: the project is not linked to its template; restore the file from git "
            "or link it with `uv run cruft link <template URL>`, then " + LINK
        )
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if not state.get("template") or not state.get("commit"):
        raise TemplateError(
            f"{STATE} names no template or commit (the template was not a git checkout when "
            "the project was baked): " + LINK
        )
    return state


def is_local(template: str) -> bool:
    """A path on this machine, not a URL a CI runner could clone."""
    return not URL.match(template)


def latest_commit(template: str, checkout: str | None = None) -> str:
    """The commit the template's `checkout` (default: its HEAD) is at now, from
    `git ls-remote`: reachability and the answer without cloning anything."""
    ref = checkout or "HEAD"
    try:
        done = git(Path.cwd(), "ls-remote", "--", template, ref, check=False, timeout=REACH_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Unreachable(f"cannot reach the template {template}: no answer in time") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git ls-remote failed"])[-1]
        raise Unreachable(f"cannot reach the template {template} ({reason})")
    pairs = (line.split("\t") for line in done.stdout.splitlines() if "\t" in line)
    refs = {name: commit for commit, name in pairs}
    commit: str | None = refs.get(ref) or next(iter(refs.values()), None)
    if commit is None and re.fullmatch(r"[0-9a-f]{7,40}", ref):
        return ref  # a commit, which ls-remote does not list
    if commit is None:
        raise TemplateError(f"the template {template} has no {ref}")
    return commit


def behind(root: Path, checkout: str | None = None) -> tuple[str, str] | None:
    """(recorded, latest) commits when the template has moved on; None when current."""
    state = load_state(root)
    latest = latest_commit(state["template"], checkout or state.get("checkout"))
    return None if latest == state["commit"] else (state["commit"], latest)


def conflicts(root: Path) -> list[str]:
    """Files an update left unresolved: conflicted merges and patches git rejected."""
    unmerged = git(root, "diff", "--name-only", "--diff-filter=U").stdout.split("\n")
    leftovers = git(root, "ls-files", "--others", "--exclude-standard").stdout.split("\n")
    rejected = [name for name in leftovers if name.endswith((".rej", ".orig"))]
    return sorted({name for name in unmerged + rejected if name})


def _require_clean_repository(root: Path) -> None:
    inside = git(root, "rev-parse", "--is-inside-work-tree", check=False)
    if inside.stdout.strip() != "true":
        raise TemplateError(
            "the project is not a git repository: commit it first (git init -b main, git add -A, "
            "git commit), so the update is a reviewable change that loses nothing"
        )
    if git(root, "status", "--porcelain").stdout.strip():
        raise TemplateError(
            "commit or stash your changes first (git status): the update is merged onto a "
            "clean working tree, so nothing of yours can be lost"
        )


def _render_ci(root: Path) -> None:
    """The CI files from the renderer (and environment schema) the update may have changed:
    in a fresh interpreter importing src/ as it is now (this process holds the old code)."""
    [source] = root.glob("src/*/cicd.py")
    env = {**os.environ, "PYTHONPATH": str(source.parent.parent), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", f"{source.parent.name}.cicd", str(root)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise TemplateError(done.stderr.strip() or "the CI renderer failed")


def _relock(root: Path) -> bool:
    """Re-resolve uv.lock when the update changed pyproject.toml; True if it did."""
    if git(root, "diff", "--quiet", "HEAD", "--", "pyproject.toml", check=False).returncode == 0:
        return False
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    done = subprocess.run([uv, "lock"], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["uv lock failed"])[-1]
        raise TemplateError(
            f"the update changed pyproject.toml but uv.lock could not follow ({reason}): "
            "run `make lock`, then review and commit"
        )
    return True


def update(root: Path, checkout: str | None = None) -> Updated | None:
    """Merge the template's later commits into the project; None when it is current.
    TemplateError naming the files when the merge left conflicts."""
    from cookiecutter.exceptions import CookiecutterException
    from cruft import update as cruft_update
    from cruft.exceptions import CruftError

    state = load_state(root)
    _require_clean_repository(root)
    # The branch or tag the project follows, if it was baked from one (cruft's default: the
    # template's default branch).
    checkout = checkout or state.get("checkout")
    latest_commit(state["template"], checkout)  # unreachable: say so before cruft clones
    try:
        applied = cruft_update(root, skip_apply_ask=True, checkout=checkout)
    except (CruftError, CookiecutterException) as error:
        raise TemplateError(f"cruft update failed: {error}") from None
    if not applied:
        raise TemplateError("cruft update applied nothing (see above)")
    after = json.loads((root / STATE).read_text(encoding="utf-8"))["commit"]
    if left := conflicts(root):
        raise TemplateError(
            f"the template update conflicts with your changes in {', '.join(left)}: resolve "
            "the <<<<<<< markers (or .rej files), `git add` them, then review and commit "
            "(`git reset --hard` abandons the update; your work is in your last commit)"
        )
    if after == state["commit"]:
        return None
    _render_ci(root)
    relocked = _relock(root)
    status = git(root, "status", "--porcelain", "--untracked-files=all").stdout
    changed = [line for line in status.splitlines() if line.strip()]
    return Updated(state["template"], state["commit"], after, changed, relocked)
