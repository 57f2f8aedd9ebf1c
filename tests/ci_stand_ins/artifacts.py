"""Artifact storage for the upload/download-artifact stand-ins: a folder per artifact.

Artifacts live in $CI_STAND_IN_ARTIFACTS/<run id>/<name>/, this run's id being
$CI_STAND_IN_RUN_ID (the test passes both to act), so download-artifact's run-id can fetch
what an earlier run uploaded, as on GitHub. The rules are those of actions/upload-artifact and
download-artifact v4, so a workflow that loses files on GitHub loses them here too:
hidden files (a name starting with ".") are left out unless include-hidden-files is true;
the artifact's root is the least common ancestor of the search paths, so `path: dist/`
stores `dist/x.bento` as `x.bento`; a name is uploaded once per run unless overwrite is true.
Inputs arrive as INPUT_* environment variables; outputs go to $GITHUB_OUTPUT.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
import sys
from pathlib import Path

WILDCARDS = "*?["


def inputs(name: str, default: str = "") -> str:
    return os.environ.get(f"INPUT_{name.upper().replace('-', '_')}", default).strip()


def store(run_id: str = "") -> Path:
    """The artifact folder of a run: this one unless `run_id` names another."""
    folder, current = os.environ.get("CI_STAND_IN_ARTIFACTS"), os.environ.get("CI_STAND_IN_RUN_ID")
    if not folder or not current:
        sys.exit("::error::CI_STAND_IN_ARTIFACTS and CI_STAND_IN_RUN_ID are passed by the test")
    return Path(folder) / (run_id or current)


def output(**values: str) -> None:
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
        for key, value in values.items():
            handle.write(f"{key}={value}\n")


def search_root(pattern: str) -> Path:
    """The part of a pattern before its first wildcard, as an absolute path."""
    kept = []
    for part in Path(pattern).parts:
        if any(char in part for char in WILDCARDS):
            break
        kept.append(part)
    return Path(os.path.abspath(Path(*kept) if kept else "."))


def expand(pattern: str) -> set[Path]:
    """Every file a pattern names: a file, each file below a directory, or glob matches."""
    files: set[Path] = set()
    for match in glob.glob(pattern, recursive=True, include_hidden=True):
        path = Path(os.path.abspath(match))
        if path.is_dir():
            files.update(child for child in path.rglob("*") if child.is_file())
        elif path.is_file():
            files.add(path)
    return files


def hidden(file: Path, roots: list[Path]) -> bool:
    """Like @actions/glob: a name starting with "." from the search root downwards."""
    root = next(r for r in roots if file == r or r in file.parents)
    return any(part.startswith(".") for part in file.relative_to(root.parent).parts)


def upload() -> None:
    name = inputs("name", "artifact") or "artifact"
    lines = [line for line in inputs("path").splitlines() if line.strip()]
    lines = [line.strip() for line in lines if not line.strip().startswith("#")]
    includes = [os.path.expanduser(line) for line in lines if not line.startswith("!")]
    excludes = [os.path.expanduser(line[1:]) for line in lines if line.startswith("!")]
    roots = sorted({search_root(pattern) for pattern in includes})
    # A search path inside another one adds nothing, as in @actions/glob.
    roots = [r for r in roots if not any(other in r.parents for other in roots)]
    files = set().union(*(expand(pattern) for pattern in includes)) if includes else set()
    files -= set().union(*(expand(pattern) for pattern in excludes)) if excludes else set()
    if inputs("include-hidden-files", "false") != "true":
        files = {file for file in files if not hidden(file, roots)}

    if not files:
        message = f"No files were found with the provided path: {inputs('path')}."
        behaviour = inputs("if-no-files-found", "warn")
        if behaviour == "error":
            sys.exit(f"::error::{message}")
        if behaviour == "warn":
            print(f"::warning::{message} No artifacts will be uploaded.")
        return

    if len(roots) > 1:
        root = Path(os.path.commonpath(roots))
    elif files == {roots[0]}:
        root = roots[0].parent  # a single file uploaded by name keeps no folders
    else:
        root = roots[0]

    target = store() / name
    if target.exists():
        if inputs("overwrite", "false") != "true":
            sys.exit(
                f"::error::Failed to CreateArtifact: an artifact named {name!r} already exists "
                "in this workflow run (set overwrite: true to replace it)"
            )
        shutil.rmtree(target)
    for file in sorted(files):
        destination = target / file.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, destination)
    print(f"Artifact {name!r}: {len(files)} file(s) from {root}")
    for file in sorted(files):
        print(f"  {file.relative_to(root)}")
    artifact_id = str(sum(1 for _ in store().iterdir()))
    output(**{"artifact-id": artifact_id, "artifact-url": target.as_uri()})


def download() -> None:
    name = inputs("name")
    run = store(inputs("run-id"))
    destination = Path(os.path.abspath(os.path.expanduser(inputs("path") or ".")))
    if name:
        if not (run / name).is_dir():
            sys.exit(
                f"::error::Unable to download artifact(s): Artifact not found for name: {name}"
            )
        chosen = {name: destination}
    else:
        pattern = inputs("pattern") or "*"
        merge = inputs("merge-multiple", "false") == "true"
        found = sorted(p.name for p in run.iterdir()) if run.is_dir() else []
        names = [n for n in found if fnmatch.fnmatch(n, pattern)]
        chosen = {n: destination if merge else destination / n for n in names}
    for artifact, folder in chosen.items():
        shutil.copytree(run / artifact, folder, dirs_exist_ok=True)
        count = sum(1 for p in (run / artifact).rglob("*") if p.is_file())
        print(f"Artifact {artifact!r} of run {run.name}: {count} file(s) into {folder}")
    output(**{"download-path": str(destination)})


if __name__ == "__main__":
    {"upload": upload, "download": download}[sys.argv[1]]()
