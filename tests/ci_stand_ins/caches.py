"""Cache storage for the actions/cache restore and save stand-ins: a folder per key.

Caches live in $CI_STAND_IN_ARTIFACTS/../actions-cache/<key>/, beside the runs' artifacts, so
every run of one test sees what an earlier run saved, as the runs of one branch do on GitHub.
The rules are those of actions/cache v4: an exact key is a hit; otherwise each restore-keys
prefix in turn restores the newest cache whose key starts with it (no hit, the matched key
given); a key is saved once and never overwritten; a path that does not exist is saved as
nothing, with a warning, and the job goes on. Paths are files or folders (no globs).
Inputs arrive as INPUT_* environment variables; outputs go to $GITHUB_OUTPUT.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# The artifact stand-ins' input and output helpers (this folder is on sys.path: a script's).
from artifacts import inputs, output


def lines(name: str) -> list[str]:
    return [line.strip() for line in inputs(name).splitlines() if line.strip()]


def caches() -> Path:
    folder = os.environ.get("CI_STAND_IN_ARTIFACTS")
    if not folder:
        sys.exit("::error::CI_STAND_IN_ARTIFACTS is passed by the test")
    return Path(folder).parent / "actions-cache"


def paths() -> list[str]:
    found = lines("path")
    if any(set(path) & set("*?[") or Path(path).is_absolute() for path in found):
        sys.exit(f"::error::the stand-in caches relative files and folders only: {found}")
    return found


def copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def restore() -> None:
    key, stored = inputs("key"), caches()
    matched = key if (stored / key).is_dir() else ""
    for prefix in [] if matched else lines("restore-keys"):
        candidates = [entry for entry in stored.glob("*") if entry.name.startswith(prefix)]
        if candidates:
            matched = max(candidates, key=lambda entry: entry.stat().st_mtime).name
            break
    output(**{"cache-primary-key": key, "cache-hit": str(matched == key).lower(),
              "cache-matched-key": matched})  # fmt: skip
    if not matched:
        print(f"Cache not found for input keys: {key}")
        return
    for path in paths():
        if (stored / matched / path).exists():
            copy(stored / matched / path, Path(path))
    print(f"Cache restored from key: {matched}")


def save() -> None:
    key, stored = inputs("key"), caches()
    if (stored / key).exists():
        print(f"::warning::Failed to save: a cache with key {key} exists already")
        return
    present = [path for path in paths() if Path(path).exists()]
    if not present:
        print("::warning::Path Validation Error: the paths to cache do not exist")
        return
    staging = stored / f".{key}.partial"  # a restore never sees half a cache
    for path in present:
        copy(Path(path), staging / path)
    staging.rename(stored / key)
    print(f"Cache saved with key: {key}")


if __name__ == "__main__":
    {"restore": restore, "save": save}[sys.argv[1]]()
