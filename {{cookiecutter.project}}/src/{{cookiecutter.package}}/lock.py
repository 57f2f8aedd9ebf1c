"""The project's uv.lock: the exact versions the bento, the infra check and a host install.

`make install` syncs the dev venv from uv.lock; the bento must carry those same versions,
not whatever an index serves on the day it is installed. `uv export` turns one dependency
group of the lock (pyproject.toml's `bento`, say) and everything it pulls in into pinned
requirement lines, with markers where the lock holds a version per Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# The checkout this package's source lives in: the bento packs this source, so it takes the
# lock beside it (a test's project root elsewhere holds data and models, not a lock).
PROJECT_DIR = Path(__file__).resolve().parents[2]
BENTO_GROUP = "bento"
EXPORT_TIMEOUT = 120


def uv() -> str:
    """The uv binary: `uv run` exports the running one as $UV; otherwise the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        raise FileNotFoundError("uv is not on PATH: the project installs and exports with uv")
    return found


def export(group: str, project: Path = PROJECT_DIR) -> list[str]:
    """Pinned requirement lines of dependency group `group` and all it depends on, from
    uv.lock; fails when the lock is missing or no longer matches pyproject.toml."""
    if not (project / "uv.lock").exists():
        raise FileNotFoundError(
            f"{project / 'uv.lock'} is missing: run `make install` to create it, and commit it"
        )
    command = [uv(), "export", "--locked", "--only-group", group, "--no-emit-project"]
    command += ["--no-hashes", "--no-header", "--no-annotate", "--format", "requirements.txt"]
    done = subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=EXPORT_TIMEOUT
    )
    if done.returncode != 0:
        # uv's error paragraph (it may wrap it over lines), else its last line.
        _, found, error = done.stderr.partition("error: ")
        lines = done.stderr.strip().splitlines() or ["no output"]
        cause = " ".join(error.split("\n\n")[0].split()) if found else lines[-1].strip()
        raise RuntimeError(
            f"uv export of group {group!r} from {project}/uv.lock failed: {cause} "
            "(after changing pyproject.toml, `make lock` updates uv.lock; commit both)"
        )
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def name_of(requirement: str) -> str:
    """The normalised project name of a pinned line (`scikit-learn==1.9.1 ; marker`)."""
    return requirement.split("==", 1)[0].strip().lower().replace("_", "-")
