"""A baked project follows its template: `make template-update` (cruft) merges the template's
later commits into a committed project, and says so, naming the file, when they clash with
the team's own edits.

Each test bakes from its own git copy of this template (the working tree as it is now), so
the template commits it makes are its own; the project is committed and installed as a team
would have it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TEMPLATE, run
from cookiecutter.main import cookiecutter

pytestmark = pytest.mark.slow

IDENTITY = ["-c", "user.name=Template Test", "-c", "user.email=test@example.com"]
PROJECT_README = "{{cookiecutter.project}}/README.md"
# The unit tests an update can break: the CI files must be exactly what the updated renderer
# makes of the project's environments (cruft skips them; the update renders them anew), the
# template commands themselves, and params.yaml still loading. The whole unit layer takes
# minutes on two busy cores; the template's other tests run it on fresh bakes.
UNIT_TESTS = [
    "tests/unit/test_cicd.py",
    "tests/unit/test_template_update.py",
    "tests/unit/test_config.py",
]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *IDENTITY, *args], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def make(project: Path, *targets: str) -> subprocess.CompletedProcess:
    return run(["make", "--no-print-directory", *targets], project, timeout=600)


def leftovers(project: Path) -> list[str]:
    """Conflict and reject files anywhere in the project but its venv."""
    return sorted(
        path.relative_to(project).as_posix()
        for pattern in ("*.rej", "*.orig")
        for path in project.rglob(pattern)
        if ".venv" not in path.relative_to(project).parts
    )


@pytest.fixture
def baked(tmp_path: Path) -> tuple[Path, Path]:
    """(template repository at its first commit, the project baked from it, committed and
    installed)."""
    template = tmp_path / "template"
    ignored = (".venv", "node_modules", ".git", "build", "__pycache__", ".*_cache")
    shutil.copytree(TEMPLATE, template, ignore=shutil.ignore_patterns(*ignored))
    git(template, "init", "-q", "-b", "main")
    commit_all(template, "First template commit")
    project = Path(
        cookiecutter(str(template), no_input=True, output_dir=str(tmp_path / "projects"))
    )
    commit_all(project, "Bake the project")
    installed = make(project, "install")
    assert installed.returncode == 0, installed.stdout
    return template, project


def test_an_update_brings_the_templates_later_commits_and_the_project_still_passes(baked, tmp_path):
    template, project = baked
    state = json.loads((project / ".cruft.json").read_text("utf-8"))
    assert state["commit"] == git(template, "rev-parse", "HEAD")
    # A plain Cookiecutter bake records exactly what `cruft create` would have.
    created = run(
        [project / ".venv/bin/cruft", "create", template, "-y", "--output-dir", tmp_path / "cruft"],
        tmp_path,
    )
    assert created.returncode == 0, created.stdout
    by_cruft = tmp_path / "cruft" / project.name / ".cruft.json"
    assert by_cruft.read_text("utf-8") == (project / ".cruft.json").read_text("utf-8")
    # A later template commit: a line in a file the team left alone, a new file, a change to
    # the CI renderer's template (the CI files themselves are rendered anew) and to
    # pyproject.toml (uv.lock, which cruft skips, is re-resolved).
    with (template / PROJECT_README).open("a", encoding="utf-8") as readme:
        readme.write("\nTemplate news for {{ cookiecutter.project_name }}.\n")
    (template / "{{cookiecutter.project}}" / "docs" / "upgrading.md").write_text(
        "# Upgrading {{ cookiecutter.project }}\n", encoding="utf-8"
    )
    ci = template / "{{cookiecutter.project}}/src/{{cookiecutter.package}}/cicd_templates"
    workflow = (ci / "github-ci.yml.j2").read_text("utf-8")
    (ci / "github-ci.yml.j2").write_text(
        workflow.replace("name: CI\n", "name: CI\n# Template news: checks explained.\n", 1),
        encoding="utf-8",
    )
    with (template / "{{cookiecutter.project}}" / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# Template news: nothing to resolve.\n")
    later = commit_all(template, "Template news")

    lagging = make(project, "template-check")
    updated = make(project, "template-update")

    assert lagging.returncode != 0 and "the template has moved on" in lagging.stdout
    assert updated.returncode == 0, updated.stdout
    assert f"-> {later[:12]}; uv.lock re-resolved" in updated.stdout
    assert "then commit" in updated.stdout
    assert leftovers(project) == []
    assert (project / "README.md").read_text("utf-8").endswith("Template news for Churn Model.\n")
    assert (project / "docs" / "upgrading.md").read_text("utf-8") == "# Upgrading churn-model\n"
    rendered = (project / ".github" / "workflows" / "ci.yml").read_text("utf-8")
    assert "# Template news: checks explained." in rendered
    state = json.loads((project / ".cruft.json").read_text("utf-8"))
    assert (state["commit"], state["context"]["cookiecutter"]["_commit"]) == (later, later)

    commit_all(project, "Update from the template")
    tested = run(
        ["uv", "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider", *UNIT_TESTS], project
    )
    assert tested.returncode == 0, tested.stdout
    assert make(project, "template-check").returncode == 0


def test_an_update_clashing_with_a_local_edit_stops_naming_the_file_and_loses_nothing(baked):
    template, project = baked
    dirty = project / "notes.txt"
    dirty.write_text("work in progress\n", encoding="utf-8")
    refused = make(project, "template-update")
    assert refused.returncode != 0 and "commit or stash your changes first" in refused.stdout
    dirty.unlink()
    assert git(project, "status", "--porcelain") == ""

    ours = "# Churn Model, as our team calls it"
    readme = (project / "README.md").read_text("utf-8")
    (project / "README.md").write_text(ours + readme[readme.index("\n") :], encoding="utf-8")
    ours_commit = commit_all(project, "Our title")
    theirs = (template / PROJECT_README).read_text("utf-8")
    title = "# {{ cookiecutter.project_name }}: a model from pull request to production"
    (template / PROJECT_README).write_text(title + theirs[theirs.index("\n") :], encoding="utf-8")
    (template / "{{cookiecutter.project}}" / "docs" / "upgrading.md").write_text("# Upgrading\n")
    commit_all(template, "A new title")

    updated = make(project, "template-update")

    assert updated.returncode != 0
    [message] = [line for line in updated.stdout.splitlines() if "conflicts with" in line]
    assert "conflicts with your changes in README.md:" in message
    text = (project / "README.md").read_text("utf-8")
    assert ours in text and "<<<<<<<" in text
    assert (project / "docs" / "upgrading.md").exists()  # what merged cleanly is there
    # Nothing lost: the team's edit is committed, and abandoning the update restores it.
    assert git(project, "rev-parse", "HEAD") == ours_commit
    git(project, "reset", "-q", "--hard")
    assert (project / "README.md").read_text("utf-8").startswith(ours + "\n")
    assert leftovers(project) == [] and git(project, "status", "--porcelain") == ""
