"""Shared helpers: answers as Cookiecutter computes them, hooks rendered as it renders them."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config
from cookiecutter.utils import create_env_with_context

TEMPLATE = Path(__file__).resolve().parents[1]
# cookiecutter.json's `_extensions` live in the template folder, which Cookiecutter puts on
# sys.path while it renders; the hooks rendered here need it too.
sys.path.append(str(TEMPLATE))

# Valid, but everything that breaks naive quoting or rendering: quotes, apostrophes,
# backslashes, non-ASCII, emoji (astral: a surrogate pair in JSON), right-to-left text,
# shell and Make syntax, Markdown's backticks, emphasis, HTML and list markers, braces.
HOSTILE = {
    "project_name": 'Zoë\'s "Quoted" Modèle 🚀',
    "description": 'Predicts "churn" for Zoë\'s team \\ back\\slash, naïve café, 東京 ✓ 🚀 '
    "שלום עולם, $(rm -rf /) `uname` *not bold* <b>x</b> [link](y) {braces} ${HOME} #tag",
    "author": "- O'Brien Łukasz 😀 مرحبا",
    "email": "o.brien+ml@example.co.uk",
}


def answers(**overrides: Any) -> dict[str, Any]:
    """The full answers Cookiecutter would pass to the hooks for --no-input plus overrides.

    Derived answers (project, package) are rendered from project_name unless overridden.
    Choice and boolean answers are set afterwards, unconverted: Cookiecutter refuses an
    unknown choice itself, but a replay or an edited .cookiecutter.json can still bring one.
    """
    questions = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    choices = {
        key: value for key, value in overrides.items() if isinstance(questions[key], list | bool)
    }
    free = {key: value for key, value in overrides.items() if key not in choices}
    context = generate_context(context_file=str(TEMPLATE / "cookiecutter.json"), extra_context=free)
    rendered = dict(prompt_for_config(context, no_input=True))
    rendered.update(choices)
    rendered.update({"_template": str(TEMPLATE), "_repo_dir": str(TEMPLATE), "_output_dir": "."})
    return rendered


def render_hook(name: str, hook_answers: dict[str, Any], folder: Path) -> ModuleType:
    """Render hooks/<name>.py with Cookiecutter's own Jinja environment and import it."""
    context = {"cookiecutter": hook_answers}
    environment = create_env_with_context(context)
    source = (TEMPLATE / "hooks" / f"{name}.py").read_text(encoding="utf-8")
    target = folder / f"{name}.py"
    target.write_text(environment.from_string(source).render(**context), encoding="utf-8")
    return load_module(f"rendered_{name}", target)


def load_module(name: str, path: Path, register: bool = False) -> ModuleType:
    """Import the Python file `path` as module `name`; `register` puts it in sys.modules
    first (dataclasses look their module up there while the class is being made)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def project_renderer(project: Path) -> ModuleType:
    """A baked project's own src/<package>/cicd.py, with the environment schema it imports,
    fresh from that project's src/ (another bake's package of the same name may be loaded)."""
    [source] = (project / "src").glob("*/cicd.py")
    package = source.parent.name
    for name in [name for name in sys.modules if name.partition(".")[0] == package]:
        del sys.modules[name]
    sys.path.insert(0, str(source.parent.parent))
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        return importlib.import_module(f"{package}.cicd")
    finally:
        sys.path.remove(str(source.parent.parent))
        sys.dont_write_bytecode = writes_bytecode


def clean_env() -> dict[str, Any]:
    """The environment for commands run inside a baked project: never this repo's venv."""
    env = dict(os.environ)
    inherited = (
        *("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH", "PROJECT_ROOT"),
        *("MLFLOW_TRACKING_URI", "BENTOML_HOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"),
    )
    # Bytecode caching on, as on a user's machine: a baked project's make targets start many
    # Python processes, and without it each one recompiles MLflow, pandas and BentoML.
    for name in (*inherited, "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env["BENTOML_DO_NOT_TRACK"] = "true"
    return env


def run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command with stderr merged into stdout, in order; the caller checks the code."""
    return subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def make_answers() -> Callable[..., dict[str, Any]]:
    return answers


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the generated pipelines' stage timings recorded by the end-to-end tests."""
    recorded = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", [])
        if name == "pipeline" and getattr(report, "when", "") == "call"
    ]
    if recorded:
        terminalreporter.write_sep("-", "generated pipelines: seconds per stage")
        for text in recorded:
            terminalreporter.write_line(text + "\n")


@pytest.fixture(scope="module")
def ci_project(cookies_session: Any) -> Path:
    """The default project for the CI-file runs, committed on main as a user would push it."""
    from ci_runners import git  # it imports this module: not at the top

    result = cookies_session.bake(extra_context={"git_init": True})
    assert result.exit_code == 0, result.exception
    repo = Path(result.project_path)
    git(repo, "commit", "-q", "-m", "Bake the project")
    git(repo, "branch", "-M", "main")
    return repo


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    """A fresh release store (MLflow server, PostgreSQL, S3) that outlives every run."""
    from release_store import running_release_store  # it imports this module

    with running_release_store(tmp_path / "release-store") as started:
        yield started


# `make test` runs two xdist workers, each taking whole modules (--dist loadfile: a module's
# shared bakes stay on one worker; --no-loadscope-reorder: in this order). The long lanes go
# out first: the promotion runs that deploy on ports 3001-3003 (one at a time, in their
# module) to one worker; the CI runs that deploy nothing (pull and merge requests, the
# data-stop runs) to the other. xdist hands a worker its next module whenever it has two
# tests or fewer pending: the promotion module has two, so the third module queues behind
# them at once, and a short one (the docs checks) takes that place; the end-to-end pipelines
# then go to the other worker once two of its runs are done. The short modules fill in.
LANES = ("test_ci_runs.py", "test_ci_check_runs.py", "test_docs.py", "test_end_to_end.py")


def _lane(item: pytest.Item) -> int:
    return LANES.index(item.path.name) if item.path.name in LANES else len(LANES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_lane)  # stable: the rest keep their order
