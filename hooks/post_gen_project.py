"""Assemble the generated project: CI files, environments, cruft's state, uv.lock, git."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
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
# What src/<package>/cicd.py imports, run by render_ci; named as pyproject.toml pins them.
RENDERER_NEEDS = ("pydantic", "pyyaml", "jinja2")
# How the renderer starts a refusal of the environments (cicd.REFUSED).
REFUSED = "cannot render the CI files from environments/: "
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


def uv_error(stderr: str) -> str:
    """uv's error paragraph, on one line."""
    error = stderr.partition("error: ")[2] or stderr
    return " ".join(error.split("\n\n")[0].split())


def renderer_requirements(project: Path) -> list[str]:
    """The pins of what the CI renderer imports, from the project's own pyproject.toml (the
    versions uv.lock and CI install), e.g. ["pydantic==2.14.4", ...]."""
    metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    declared = metadata["project"]["dependencies"] + [
        spec for group in metadata.get("dependency-groups", {}).values() for spec in group
    ]
    pins: dict[str, str] = {}
    for spec in declared:
        name, _, version = spec.partition("==")
        if name in RENDERER_NEEDS and version:
            pins[name] = spec
    missing = sorted(set(RENDERER_NEEDS) - set(pins))
    if missing:
        sys.exit(
            f"pyproject.toml pins no version of {', '.join(missing)}: the CI renderer needs it"
        )
    return [pins[name] for name in RENDERER_NEEDS]


def render_ci(project: Path, package: str) -> None:
    """Write every platform's CI files from environments/ with the project's own renderer
    (`python -m <package>.cicd`), which validates them with the CD engine's schema. It
    needs pydantic, which Cookiecutter's environment may lack, so uv runs it in one of its
    own holding the project's pins: from uv's cache when it has them (well under a second),
    else from the index. A bad environments file stops the bake with one line."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        sys.exit(
            "uv not found: the bake renders the CI files with uv (https://docs.astral.sh/uv/); "
            "install it and bake again"
        )
    command = [uv, "run", "--no-project", "--python", ">=3.11", "--no-python-downloads"]
    for requirement in renderer_requirements(project):
        command += ["--with", requirement]
    command += ["python", "-m", f"{package}.cicd", str(project), *CI_FILES]
    # The project's own package, and no bytecode left in it; nothing of another venv.
    leaks = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH", "PYTHONHOME")
    env = {key: value for key, value in os.environ.items() if key not in leaks}
    env.update(PYTHONPATH=str(project / "src"), PYTHONDONTWRITEBYTECODE="1")
    for mode in (["--offline"], []):
        try:
            done = subprocess.run(
                command[:2] + mode + command[2:], cwd=project.parent, env=env,
                capture_output=True, text=True, timeout=LOCK_TIMEOUT,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            sys.exit(f"cannot run the CI renderer with uv ({uv}): {error}")
        refused = [line for line in done.stderr.splitlines() if line.startswith(REFUSED)]
        if refused:
            sys.exit(refused[-1])
        if done.returncode == 0:
            return
    sys.exit(f"cannot run the CI renderer with uv: {uv_error(done.stderr)}")


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
    print(f"uv.lock not written ({uv_error(stderr)}): `make install` creates it; commit it")
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
