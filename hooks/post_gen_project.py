"""Assemble the generated project: CI files, environments, answers file, uv.lock, git."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS = json.loads(
    r"""
{{ cookiecutter | tojson }}
"""
)

TASKS = ("binary", "multiclass", "regression")
REMOTE_TEMPLATE = re.compile(r"^(gh:|gl:|bb:|https?://|git@|git\+|ssh://)")
LOCK_TIMEOUT = 300
CI_FILES = {
    "github": [".github"],
    "gitlab": [".gitlab-ci.yml"],
}


def drop_unused_ci(project, ci):
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


def template_dir(repo_dir):
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


def copy_environments(template, project):
    """Copy the template's environment catalogue, the single source of truth."""
    target = project / "environments"
    target.mkdir(exist_ok=True)
    for source in sorted((template / "environments").glob("*.yaml")):
        shutil.copyfile(str(source), str(target / source.name))


def render_ci(project, package):
    """Write every platform's CI files from environments/ with the project's own renderer
    (src/<package>/cicd.py: stdlib, PyYAML and Jinja2 only, all in Cookiecutter's env)."""
    source = project / "src" / package / "cicd.py"
    spec = importlib.util.spec_from_file_location(f"_{package}_cicd", source)
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


def keep_task_suite(project, task):
    """Keep the expectation suite profiled for the chosen task's default data."""
    suites = project / "expectations"
    (suites / f"{task}.json").rename(suites / "raw.json")
    for other in TASKS:
        (suites / f"{other}.json").unlink(missing_ok=True)


def write_answers(project, answers):
    """Record the public answers so the project can be replayed or updated."""
    public = {key: value for key, value in answers.items() if not key.startswith("_")}
    # A local checkout's path means nothing on another machine; keep remote references only.
    template = answers.get("_template", "")
    public["_template"] = template if REMOTE_TEMPLATE.match(template) else ""
    text = json.dumps(public, indent=2, ensure_ascii=False) + "\n"
    (project / ".cookiecutter.json").write_text(text, encoding="utf-8")


def uv_lock(project):
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


def git_init(project):
    """Start a repository on branch main with every file staged."""
    if shutil.which("git") is None:
        print("git not found: skipping git init")
        return
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)


def main():
    project = Path.cwd()
    template = template_dir(ANSWERS["_repo_dir"])
    copy_environments(template, project)
    render_ci(project, ANSWERS["package"])
    drop_unused_ci(project, ANSWERS["ci"])
    keep_task_suite(project, ANSWERS["task"])
    write_answers(project, ANSWERS)
    uv_lock(project)
    if ANSWERS["git_init"]:
        git_init(project)


if __name__ == "__main__":
    main()
