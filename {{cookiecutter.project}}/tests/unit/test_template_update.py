"""`make template-check` / `template-update`: what they read, reach and report. (The update
itself, cruft's three-way merge, is run for real by the template's own tests.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package }} import template_update as template
from {{ cookiecutter.package }}.cli import app

pytestmark = pytest.mark.unit


def git(folder: Path, *args: str) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=folder, capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{name}: {text}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """A template repository with one commit."""
    repo = tmp_path / "template"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "cookiecutter.json", "{}")
    return repo


def linked_project(root: Path, template: str, commit_: str | None) -> Path:
    root.mkdir(exist_ok=True)
    state = {"template": template, "commit": commit_, "checkout": None, "directory": None}
    state["context"] = {"cookiecutter": {"project": "demo"}}
    (root / ".cruft.json").write_text(json.dumps(state), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("/home/someone/ml-gitops-template", True),
        ("../ml-gitops-template", True),
        ("https://github.com/acme/ml-gitops-template.git", False),
        ("git@gitlab.com:acme/ml-gitops-template.git", False),
        ("ssh://git@example.com/acme/template.git", False),
        ("file:///srv/git/template.git", False),
    ],
)
def test_a_path_on_this_machine_is_told_from_a_url_a_runner_could_clone(address, local):
    assert template.is_local(address) is local


def test_a_lagging_project_is_told_from_a_current_one_without_cloning(upstream, tmp_path):
    first = git(upstream, "rev-parse", "HEAD")
    project = linked_project(tmp_path / "project", f"file://{upstream}", first)
    assert template.behind(project) is None

    second = commit(upstream, "README.md", "news")

    assert template.behind(project) == (first, second)
    assert template.latest_commit(f"file://{upstream}", "main") == second


def test_an_unreachable_template_is_one_line_naming_it(tmp_path):
    missing = f"file://{tmp_path}/gone"
    with pytest.raises(template.Unreachable, match=f"cannot reach the template {missing}"):
        template.latest_commit(missing)


def test_a_project_baked_from_an_unpacked_template_is_told_how_to_link_it(tmp_path):
    project = linked_project(tmp_path, "", None)
    with pytest.raises(template.TemplateError, match=r'set "template" \(its git URL\)'):
        template.load_state(project)


def test_conflicted_merges_and_rejected_patches_are_named(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "params.yaml", "seed: 1\n")
    git(repo, "checkout", "-q", "-b", "template")
    commit(repo, "params.yaml", "seed: 2\n")
    git(repo, "checkout", "-q", "main")
    commit(repo, "params.yaml", "seed: 3\n")
    git(repo, "merge", "-q", "template")
    (repo / "README.md.rej").write_text("@@ rejected hunk\n", encoding="utf-8")

    assert template.conflicts(repo) == ["README.md.rej", "params.yaml"]


def test_ci_reports_a_lag_as_a_github_warning_and_passes(upstream, tmp_path, monkeypatch):
    first = git(upstream, "rev-parse", "HEAD")
    project = linked_project(tmp_path / "project", f"file://{upstream}", first)
    commit(upstream, "README.md", "news")
    monkeypatch.setenv("PROJECT_ROOT", str(project))

    reported = CliRunner().invoke(
        app, ["template", "check", "--report"], env={"GITHUB_ACTIONS": "true"}
    )
    checked = CliRunner().invoke(app, ["template", "check"])

    assert reported.exit_code == 0, reported.output
    assert reported.output.startswith("::warning title=Template update::the template has moved on")
    assert checked.exit_code == 1
    assert "run `make template-update`" in checked.output


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("/home/someone/ml-gitops-template", "not checked: the template is a path on the machine"),
        ("file:///nonexistent/template.git", "not checked: cannot reach the template"),
    ],
)
def test_ci_skips_a_template_it_cannot_reach_with_a_message(tmp_path, monkeypatch, address, says):
    monkeypatch.setenv("PROJECT_ROOT", str(linked_project(tmp_path, address, "0" * 40)))

    reported = CliRunner().invoke(app, ["template", "check", "--report"])

    assert reported.exit_code == 0, reported.output
    assert reported.output.startswith(says)
