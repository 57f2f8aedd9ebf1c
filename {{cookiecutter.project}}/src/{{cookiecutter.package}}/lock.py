"""The project's uv.lock: the exact versions the bento, the infra check and a host install.

`make install` syncs the dev venv from uv.lock; the bento must carry those same versions,
not whatever an index serves on the day it is installed. `uv export` turns one dependency
group of the lock (pyproject.toml's `bento`, say) and everything it pulls in into pinned
requirements, with markers where the lock holds a version per Python, and the sha256 of
every file the lock allows: an installer then takes only those exact files (a package
replaced on the index, or by a mirror, fails the install instead of running).
"""

from __future__ import annotations

import os
import re
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


def export(group: str, project: Path = PROJECT_DIR, hashes: bool = True) -> list[str]:
    """Pinned requirements of dependency group `group` and all it depends on, from uv.lock,
    one entry each: `name==version[ ; marker]`, followed, with `hashes`, by its `--hash`
    options on continuation lines (requirements.txt syntax). Fails when the lock is missing
    or no longer matches pyproject.toml."""
    options = ([] if hashes else ["--no-hashes"]) + ["--no-header", "--no-annotate"]
    return entries(_export(group, project, [*options, "--format", "requirements.txt"]))


def _export(group: str, project: Path, options: list[str]) -> str:
    """What `uv export` of `group` writes with `options`, or one line saying why it failed."""
    if not (project / "uv.lock").exists():
        raise FileNotFoundError(
            f"{project / 'uv.lock'} is missing: run `make install` to create it, and commit it"
        )
    command = [uv(), "export", "--locked", "--only-group", group, "--no-emit-project", *options]
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
    return done.stdout


def locked_files(
    entries: list[str], target: Path, group: str = BENTO_GROUP, project: Path = PROJECT_DIR
) -> Path | None:
    """Exported requirement `entries` (a bento's, hashes included) as a PEP 751 lock file in
    `target`, taken from uv.lock's `group` (its markers are that group's, as the entries'):
    the same packages, versions and sha256 digests.

    uv installs such a file without resolving against an index, so from its cache alone
    when `uv sync` fetched those files before: a fresh machine's cache holds the wheels but
    not the index pages a requirements file is resolved against. None when an entry is not
    in the group as such (another version or other files: a bento built from another lock).
    """
    wanted = {_requirement_identity(entry) for entry in entries}
    header, *blocks = _export(group, project, ["--format", "pylock.toml"]).split(_TABLE)
    kept = [block for block in blocks if _identity(block) in wanted]
    if {_identity(block) for block in kept} != wanted:
        return None
    file = target / f"pylock.{group}.toml"  # PEP 751 names: pylock.toml or pylock.<name>.toml
    file.write_text(_TABLE.join([header, *kept]))
    return file


_TABLE = "\n[[packages]]\n"


def _identity(block: str) -> tuple[str, str, frozenset[str]]:
    """Name, version and file digests of one [[packages]] table as uv writes it."""
    fields = dict(re.findall(r'^(name|version) = "([^"]*)"$', block, re.M))
    digests = frozenset(f"sha256:{d}" for d in re.findall(r'sha256 = "([0-9a-f]{64})"', block))
    return name_of(fields.get("name", "")), fields.get("version", ""), digests


def _requirement_identity(entry: str) -> tuple[str, str, frozenset[str]]:
    """Name, version and allowed digests of one exported requirement entry."""
    pin = requirement_of(entry)
    version = pin.split("==", 1)[1].split(";", 1)[0].strip() if "==" in pin else ""
    return name_of(pin), version, frozenset(hashes_of(entry))


def entries(text: str) -> list[str]:
    """The entries of a requirements file: each line with its indented continuation lines
    (a requirement's `--hash` options), blank lines left out."""
    found: list[str] = []
    for line in text.splitlines():
        if line[:1].isspace() and line.strip() and found:
            found[-1] += "\n" + line.rstrip()
        elif line.strip():
            found.append(line.strip())
    return found


def unhashed(text: str) -> list[str]:
    """The requirements of a requirements file that name no sha256 to check.

    BentoML appends its own pin, unhashed, to a bento's file; it counts as hashed when an
    entry with hashes pins the same version (uv then checks that entry's files).
    """
    requirements = [entry for entry in entries(text) if not entry.startswith(("#", "-"))]
    hashed = {requirement_of(entry) for entry in requirements if hashes_of(entry)}
    return [
        requirement_of(entry)
        for entry in requirements
        if not hashes_of(entry) and requirement_of(entry) not in hashed
    ]


def requirement_of(entry: str) -> str:
    """The requirement of an exported entry, its hashes left out (`numpy==2.4.6`)."""
    return entry.split("\n", 1)[0].removesuffix("\\").strip()


def hashes_of(entry: str) -> list[str]:
    """The `sha256:...` digests an exported entry allows."""
    return [word.split("=", 1)[1] for word in entry.split() if word.startswith("--hash=")]


def name_of(requirement: str) -> str:
    """The normalised project name of a pinned entry (`scikit-learn==1.9.1 ; marker`)."""
    return requirement.split("==", 1)[0].strip().lower().replace("_", "-")
