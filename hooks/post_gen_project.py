"""Assemble the generated project: CI files, environments, cruft's state, uv.lock, git."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ANSWERS: dict[str, Any] = json.loads(
    r"""
{{ cookiecutter | tojson }}
"""
)
# The template's folder as local_extensions.py knows it: cruft, which regenerates the project
# at two template commits to update it, passes no _repo_dir.
TEMPLATE_FOLDER: str = json.loads(
    r"""
{{ template_folder | tojson }}
"""
)

TASKS = ("binary", "multiclass", "regression")
REMOTE_TEMPLATE = re.compile(r"^(gh:|gl:|bb:|https?://|git@|git\+|ssh://)")
# What Cookiecutter adds to the answers for one run only; cruft's state leaves it out.
RUN_ONLY = ("_repo_dir", "_output_dir", "_checkout")
LOCK_TIMEOUT = 300
CI_FILES = {
    "github": [".github"],
    "gitlab": [".gitlab-ci.yml"],
}


def drop_unused_ci(project: Path, ci: str) -> None:
    """Remove the CI files of any platform that was not chosen."""
    chosen = set(ci.split("+"))
    for platform, paths in CI_FILES.items():
        if platform in chosen:
            continue
        for name in paths:
            path = project / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def template_dir(repo_dir: str) -> Path:
    """The template checkout. Cookiecutter passes a path relative to the directory
    it was started in when given a relative one, while hooks run in the project."""
    path = Path(repo_dir)
    if not path.is_absolute():
        path = Path(os.environ.get("PWD", ".")) / path
    if not (path / "environments").is_dir():
        sys.exit(
            f"cannot find the template's environments/ under {path} (from _repo_dir {repo_dir!r}); "
            "run cookiecutter with an absolute template path"
        )
    return path


def copy_environments(template: Path, project: Path) -> None:
    """Copy the template's environment catalogue, the single source of truth."""
    target = project / "environments"
    target.mkdir(exist_ok=True)
    for source in sorted((template / "environments").glob("*.yaml")):
        shutil.copyfile(str(source), str(target / source.name))


def render_ci(project: Path, package: str) -> None:
    """Write every platform's CI files from environments/ with the project's own renderer
    (src/<package>/cicd.py: stdlib, PyYAML and Jinja2 only, all in Cookiecutter's env)."""
    source = project / "src" / package / "cicd.py"
    spec = importlib.util.spec_from_file_location(f"_{package}_cicd", source)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {source} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being made.
    sys.modules[spec.name] = module
    # Importing would leave src/<package>/__pycache__/ in the freshly baked project.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
        module.write(project, list(module.OUTPUTS))
    except (OSError, ValueError) as error:
        sys.exit(f"cannot render the CI files from environments/: {error}")
    finally:
        sys.modules.pop(spec.name, None)
        sys.dont_write_bytecode = writes_bytecode


def keep_task_suite(project: Path, task: str) -> None:
    """Keep the expectation suite profiled for the chosen task's default data."""
    suites = project / "expectations"
    (suites / f"{task}.json").rename(suites / "raw.json")
    for other in TASKS:
        (suites / f"{other}.json").unlink(missing_ok=True)


def git_output(folder: Path | str, *args: str) -> str | None:
    """`git -C folder args`'s output, or None when git or the repository is missing."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def template_source(template: Path, answers: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(URL or path, commit, sub-folder) of the template checkout, as `cruft update` clones
    it; ("", None, None) when the template is not a git checkout (an unpacked archive)."""
    commit = git_output(template, "rev-parse", "HEAD")
    if not commit:
        return "", None, None
    # A checkout with a commit has a top folder and a prefix ("" at the top).
    top = git_output(template, "rev-parse", "--show-toplevel") or str(template)
    directory = (git_output(template, "rev-parse", "--show-prefix") or "").rstrip("/") or None
    given = answers.get("_template", "")
    # Cookiecutter cloned a remote template: its origin is the URL (gh: and such expanded).
    url = git_output(top, "remote", "get-url", "origin") if REMOTE_TEMPLATE.match(given) else None
    return url or top, commit, directory


def bake_inputs(template: Path) -> list[str]:
    """What a bake reads from the template (its other files, a venv, notes, don't count)."""
    project_folders = [path.name for path in template.glob("{*cookiecutter.*}") if path.is_dir()]
    return ["cookiecutter.json", "local_extensions.py", "hooks", "environments", *project_folders]


def write_cruft_state(project: Path, answers: dict[str, Any], template: Path) -> None:
    """Write .cruft.json as `cruft create` does: the template, the commit baked and the
    answers, so `cruft update` (make template-update) can apply the template's later
    commits. What it skips is in pyproject.toml's [tool.cruft]."""
    url, commit, directory = template_source(template, answers)
    # In cookiecutter.json's order, as cruft writes them (the hook's copy is sorted): the
    # first update then changes only the commit.
    questions = json.loads((template / "cookiecutter.json").read_text(encoding="utf-8"))
    keys = [key for key in questions if key in answers] + sorted(set(answers) - set(questions))
    context = {key: answers[key] for key in keys if key not in (*RUN_ONLY, "_template")}
    context.update({"_template": url, "_commit": commit})
    state = {
        "template": url,
        "commit": commit,
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": context},
        "directory": directory,
    }
    text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    (project / ".cruft.json").write_text(text, encoding="utf-8")
    if commit is None:
        print(
            f"the template at {template} is not a git checkout: .cruft.json records the answers "
            "but no template URL or commit; `make template-update` says how to add them"
        )
    elif git_output(template, "status", "--porcelain", "--", *bake_inputs(template)):
        print(
            f"the template at {template} has uncommitted changes: .cruft.json records commit "
            f"{commit[:12]}, which lacks them (`make template-update` would apply them again)"
        )


def uv_lock(project: Path) -> bool:
    """Write uv.lock, so the first commit pins every dependency: from uv's cache alone when it
    holds them all (about a second), else from the index. A bake never fails for it; without
    uv, the index or an interpreter of the chosen Python, `make install` locks instead."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        print("uv not found: uv.lock not written; `make install` creates it: commit it")
        return False
    # Run from outside the project: a pyenv `uv` shim would read its .python-version.
    leaks = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    env = {key: value for key, value in os.environ.items() if key not in leaks}
    command = [uv, "--directory", str(project), "lock", "--no-python-downloads"]
    for mode in (["--offline"], []):
        try:
            done = subprocess.run(
                command + mode, cwd=project.parent, env=env, capture_output=True, text=True,
                timeout=LOCK_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            stderr = f"error: uv lock took over {LOCK_TIMEOUT} s"
            continue
        if done.returncode == 0:
            return True
        stderr = done.stderr
    # uv's error paragraph, on one line.
    error = stderr.partition("error: ")[2] or stderr
    cause = " ".join(error.split("\n\n")[0].split())
    print(f"uv.lock not written ({cause}): `make install` creates it; commit it")
    return False


def git_init(project: Path) -> None:
    """Start a repository on branch main with every file staged."""
    if shutil.which("git") is None:
        print("git not found: skipping git init")
        return
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)


def main() -> None:
    project = Path.cwd()
    # cruft (create, or update regenerating the project in a temporary folder) passes no
    # _repo_dir, writes .cruft.json itself, and leaves uv.lock and git to the project.
    by_cruft = "_repo_dir" not in ANSWERS
    template = template_dir(ANSWERS.get("_repo_dir") or TEMPLATE_FOLDER)
    copy_environments(template, project)
    render_ci(project, ANSWERS["package"])
    drop_unused_ci(project, ANSWERS["ci"])
    keep_task_suite(project, ANSWERS["task"])
    if by_cruft:
        return
    write_cruft_state(project, ANSWERS, template)
    uv_lock(project)
    if ANSWERS["git_init"]:
        git_init(project)


if __name__ == "__main__":
    main()
