"""Infrastructure check, part of packaging: serve the bento from a fresh venv made only of its own requirements.

The dev environment holds every package the project uses, so a package the service
imports but the bento forgot to declare goes unnoticed there and breaks only on the
server. Here a new virtual environment gets exactly the bento's `env/python/
requirements.txt`, serves the bento on 127.0.0.1 and must answer like the registered
model version it packs. Those requirements are uv.lock's pins of the `bento` group with
everything it pulls in (package.py), so the venv holds exactly the locked versions.

Packages come from uv's cache first: the project venv was installed from it, so every pin
is normally there and the check needs no network. The pins are installed as uv.lock names
their files (`lock.locked_files`, no index to resolve against), else from the requirements
file offline; only when both fail, and $INFRA_CHECK_OFFLINE is not "1" (the tests set it),
is the requirements file installed online, so a fresh CI runner with a cold cache works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from . import lock, serving, smoke
from .config import Params, Paths
from .package import bento_labels, latest_bento
from .smoke import SmokeResult

OFFLINE_VARIABLE = "INFRA_CHECK_OFFLINE"
INSTALL_TIMEOUT = 600
# Variables that would let the fresh venv see the dev environment's packages.
LEAKY_VARIABLES = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")


def _clean_env(paths: Paths) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    return {**env, "BENTOML_HOME": str(paths.bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}


def requirements_of(bento_path: Path) -> Path:
    """The requirements file BentoML wrote into the bento (bentoml 1.4 layout)."""
    file = bento_path / "env" / "python" / "requirements.txt"
    if not file.exists():
        raise FileNotFoundError(f"{file} is missing: the bento declares no Python requirements")
    return file


def pinned_lines(requirements: Path) -> list[str]:
    """The requirements of a bento's requirements.txt, hashes, comments and options left out."""
    found = lock.entries(requirements.read_text())
    return [lock.requirement_of(entry) for entry in found if not entry.startswith(("#", "-"))]


def hash_checked(requirements: Path, folder: Path) -> Path:
    """`requirements` for a `--require-hashes` install, written into `folder`: refused when a
    requirement names no sha256, BentoML's own unhashed pin dropped when a hashed entry pins
    the same version (hash-checking mode would refuse the duplicate)."""
    text = requirements.read_text()
    if missing := lock.unhashed(text):
        raise RuntimeError(
            f"{requirements} names no sha256 for {', '.join(missing)}: every requirement must "
            "be hashed (package.py exports them from uv.lock; `make package` builds it again)"
        )
    kept = [e for e in lock.entries(text) if lock.hashes_of(e) or e.startswith(("#", "-"))]
    checked = folder / "requirements.txt"
    checked.write_text("\n".join(kept) + "\n")
    return checked


def _run(command: list[str], paths: Paths, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(paths),
        timeout=INSTALL_TIMEOUT,
    )


def make_venv(paths: Paths, folder: Path, requirements: Path) -> Path:
    """A new venv at `folder` (same Python version as this one) with `requirements`, each
    file checked against the sha256 hashes they name (a requirement without one is refused)."""
    uv = lock.uv()
    made = _run([uv, "venv", "--clear", "--quiet", "--python", sys.executable, str(folder)],
                paths, folder.parent)  # fmt: skip
    if made.returncode != 0:
        raise RuntimeError(f"uv venv {folder} failed: {made.stderr.strip()}")
    python = folder / "bin" / "python"
    checked = hash_checked(requirements, folder)
    install = [uv, "pip", "install", "--quiet", "--python", str(python), "--require-hashes"]
    install += ["-r", str(checked)]
    wheels = requirements.parent / "wheels"
    if wheels.is_dir():
        install += ["--find-links", str(wheels)]
    done = None if wheels.is_dir() else _install_locked(paths, python, checked, folder)
    if done is None or done.returncode != 0:
        done = _run([*install, "--offline"], paths, folder.parent)
    if done.returncode != 0 and os.environ.get(OFFLINE_VARIABLE) != "1":
        done = _run(install, paths, folder.parent)
    if done.returncode != 0:
        raise RuntimeError(
            f"installing the bento's requirements ({requirements}) failed: {done.stderr.strip()}"
        )
    return python


def _install_locked(
    paths: Paths, python: Path, requirements: Path, folder: Path
) -> subprocess.CompletedProcess[str] | None:
    """Install hash-checked `requirements` offline as uv.lock names their files; None when
    uv.lock cannot say (an entry it does not hold, or a lock out of date with pyproject.toml)."""
    entries = lock.entries(requirements.read_text())
    hashed = [entry for entry in entries if lock.hashes_of(entry)]
    try:
        locked = lock.locked_files(hashed, folder)
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    if locked is None:
        return None
    install = [lock.uv(), "pip", "install", "--quiet", "--python", str(python), "--offline"]
    return _run([*install, "-r", str(locked)], paths, folder.parent)


class InfraResult(BaseModel):
    """What the infra check found: `make infra-check` prints it, the pipeline fails on it."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    bento: str
    venv: str  # where the fresh venv was built (removed afterwards unless kept)
    requirements: list[str]  # the bento's own pins, installed there
    smoke: SmokeResult | None  # None: the bento never served
    error: str | None  # why it failed, in one line
    log: str | None = None  # the server's log, when a server that died wrote one
    seconds: float


def check(
    params: Params, paths: Paths, bento_tag: str | None = None, keep_venv_in: Path | None = None
) -> InfraResult:
    """Serve `bento_tag` (default: the latest built) from its own requirements only.

    The venv is built in a temporary folder and removed afterwards, unless `keep_venv_in`
    names a folder to build it in and leave it (for inspection).
    """
    import bentoml

    labels = bento_labels(paths, bento_tag or latest_bento(paths))
    tag = labels["bento"]
    requirements = requirements_of(Path(bentoml.get(tag).path))
    # A throwaway folder: the venv (hundreds of MB) must not land in .state/, which CI hands
    # from job to job as an artifact.
    scratch = keep_venv_in or Path(tempfile.mkdtemp(prefix="infra-check-"))
    venv = scratch / "venv"
    found: SmokeResult | None = None
    error: str | None = None
    server_log: str | None = None
    started = time.perf_counter()
    port = serving.free_port()
    log = serving.log_file(paths, "infra", port)
    try:
        python = make_venv(paths, venv, requirements)
        model = smoke.reference_model(paths, labels["model_version"])
        server = serving.start(paths, tag, port, "infra", python=str(python), env=_clean_env(paths))
        try:
            rows = smoke.held_out_rows(params, paths)
            found = smoke.check(params, server.url, model, tag, rows)
        finally:
            serving.stop(server)
    except (RuntimeError, TimeoutError) as failure:
        # A server that died says why in its log (e.g. ModuleNotFoundError: lightgbm).
        cause = str(failure)
        if log.exists():
            cause, server_log = serving.error_cause(log.read_text(errors="replace")), str(log)
        error = f"bento {tag} does not serve from its own requirements: {cause}"
    else:
        if not found.passed:
            error = (
                f"bento {tag} served from its own requirements answers unlike model version "
                f"{labels['model_version']} (max abs diff {found.max_abs_diff:.3g} over "
                f"{found.rows} held-out rows, serving {found.serving})"
            )
    finally:
        if keep_venv_in is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return InfraResult(
        passed=error is None,
        bento=tag,
        venv=str(venv),
        requirements=pinned_lines(requirements),
        smoke=found,
        error=error,
        log=server_log,
        seconds=round(time.perf_counter() - started, 1),
    )
