"""The hooks, rendered the way Cookiecutter renders them, then imported and exercised."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import HOSTILE, TEMPLATE, answers, render_hook
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter
from markdown_it import MarkdownIt

# (answers, the answer the message must name, words the message must contain)
REJECTED = {
    "empty-name": ({"project_name": ""}, "project_name", "letter or digit"),
    "symbol-only-name": ({"project_name": "!!! ???"}, "project_name", "letter or digit"),
    "package-starts-with-digit": ({"project_name": "3D Model"}, "package", "identifier"),
    "package-not-ascii": ({"package": "modèle"}, "package", "identifier"),
    "package-keyword": ({"project_name": "Class"}, "package", "keyword"),
    "package-soft-keyword": ({"project_name": "Match"}, "package", "keyword"),
    "package-shadows-lightgbm": ({"project_name": "LightGBM"}, "package", "shadow"),
    "package-shadows-mlflow": ({"project_name": "MLflow"}, "package", "shadow"),
    "package-shadows-stdlib-json": ({"project_name": "JSON"}, "package", "shadow"),
    "project-with-underscore": ({"project": "churn_model"}, "project", "hyphens"),
    "email-without-at": ({"email": "ml-team.example.com"}, "email", "name@example.com"),
    "email-with-space": ({"email": "ml team@example.com"}, "email", "name@example.com"),
    "email-without-domain-dot": ({"email": "ml@localhost"}, "email", "name@example.com"),
    "unknown-ci": ({"ci": "jenkins"}, "ci", "github+gitlab, github, gitlab"),
    "unknown-task": ({"task": "clustering"}, "task", "binary, multiclass, regression"),
    "unknown-python": ({"python_version": "2.7"}, "python_version", "3.11"),
    "git-init-as-text": ({"git_init": "yes"}, "git_init", "true or false"),
}


@pytest.fixture
def pre_hook(tmp_path):
    """Render the pre-generation hook for given answers and import it."""

    def load(hook_answers):
        return render_hook("pre_gen_project", hook_answers, tmp_path)

    return load


@pytest.fixture
def post_hook(tmp_path):
    folder = tmp_path / "hook"
    folder.mkdir()
    return render_hook("post_gen_project", answers(), folder)


@pytest.mark.parametrize(("overrides", "name", "words"), REJECTED.values(), ids=REJECTED.keys())
def test_pre_hook_rejects_a_bad_answer_with_a_message_naming_it(pre_hook, overrides, name, words):
    hook_answers = answers(**overrides)
    errors = pre_hook(hook_answers).validate(hook_answers)
    named = [error for error in errors if error.startswith(f"{name} ")]
    assert named, f"no error names {name!r}: {errors}"
    assert any(words in error for error in named), errors


@pytest.mark.parametrize("extra", [{}, HOSTILE], ids=["defaults", "hostile-but-valid"])
def test_pre_hook_accepts_valid_answers(pre_hook, extra):
    hook_answers = answers(**extra)
    assert pre_hook(hook_answers).validate(hook_answers) == []


def test_pre_hook_sees_hostile_answers_exactly_as_given(pre_hook):
    """Answers reach the hook as JSON data: quotes and backslashes cannot break the script."""
    hook_answers = answers(**HOSTILE)
    module = pre_hook(hook_answers)
    for key, value in HOSTILE.items():
        assert module.ANSWERS[key] == value


def test_pre_hook_main_exits_non_zero_printing_every_error(pre_hook, capsys):
    hook_answers = answers(project_name="JSON", email="nobody")
    with pytest.raises(SystemExit) as stopped:
        pre_hook(hook_answers).main()
    assert stopped.value.code == 1
    printed = capsys.readouterr().err
    assert "ERROR: package 'json' would shadow" in printed
    assert "ERROR: email must look like name@example.com, got 'nobody'" in printed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"project_name": "LightGBM"}, "ERROR: package 'lightgbm' would shadow"),
        ({"email": "not an email"}, "ERROR: email must look like name@example.com"),
        ({"project_name": "3D Model"}, "ERROR: package must be an ASCII Python identifier"),
    ],
    ids=["shadowing-package", "malformed-email", "package-starts-with-digit"],
)
def test_baking_with_a_bad_answer_fails_and_writes_nothing(
    cookies, tmp_path, capfd, overrides, message
):
    result = cookies.bake(extra_context=overrides)
    assert result.exit_code != 0
    assert isinstance(result.exception, FailedHookException)
    assert message in capfd.readouterr().err
    leftovers = [path for path in (tmp_path / "cookies").rglob("*") if path.is_file()]
    assert leftovers == []


@pytest.mark.parametrize(
    ("ci", "kept", "dropped"),
    [
        ("github+gitlab", [".github", ".gitlab-ci.yml"], []),
        ("github", [".github"], [".gitlab-ci.yml"]),
        ("gitlab", [".gitlab-ci.yml"], [".github"]),
    ],
)
def test_post_hook_drops_the_ci_files_of_an_unchosen_platform(
    post_hook, tmp_path, ci, kept, dropped
):
    project = tmp_path / "project"
    (project / ".github" / "workflows").mkdir(parents=True)
    (project / ".github" / "workflows" / "ci.yml").write_text("name: CI\n")
    (project / ".gitlab-ci.yml").write_text("stages: [test]\n")
    post_hook.drop_unused_ci(project, ci)
    assert all((project / name).exists() for name in kept)
    assert not any((project / name).exists() for name in dropped)


def project_with_renderer(tmp_path):
    """The project as Cookiecutter renders it before the post-generation hook (its package's
    CI renderer and environment schema, pyproject.toml's pins), with the template's
    environments."""
    project = Path(
        cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(tmp_path), accept_hooks=False)
    )
    shutil.copytree(TEMPLATE / "environments", project / "environments")
    return project


def test_post_hook_renders_both_platforms_ci_files_from_the_environments(post_hook, tmp_path):
    project = project_with_renderer(tmp_path)
    post_hook.render_ci(project, "churn_model")
    cd = yaml.safe_load((project / ".github" / "workflows" / "cd.yml").read_text())
    gitlab = yaml.safe_load((project / ".gitlab-ci.yml").read_text())
    for name in ("test", "preprod", "production"):
        assert cd["jobs"][f"deploy-{name}"]["environment"]["name"] == name
        assert gitlab[f"deploy-{name}"]["environment"]["name"] == name
    assert (project / ".github" / "workflows" / "ci.yml").exists()
    assert not list(project.rglob("__pycache__")), "the render left bytecode in the project"


def test_post_hook_stops_with_one_line_on_a_broken_environment(post_hook, tmp_path):
    project = project_with_renderer(tmp_path)
    staging = project / "environments" / "staging.yaml"
    staging.write_text(
        "name: staging\nrequires: qa\npromotion: auto\ndeploy: {target: local, port: 3004}\n"
    )
    with pytest.raises(SystemExit) as stopped:
        post_hook.render_ci(project, "churn_model")
    assert stopped.value.code == (
        f"cannot render the CI files from environments/: {staging}: field gates: Field required"
    )
    assert not (project / ".gitlab-ci.yml").exists()


def test_post_hook_without_uv_stops_with_one_line_saying_so(post_hook, tmp_path, monkeypatch):
    project = project_with_renderer(tmp_path)
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(SystemExit, match="^uv not found: the bake renders the CI files with uv"):
        post_hook.render_ci(project, "churn_model")
    monkeypatch.setenv("UV", str(tmp_path / "no-uv-here"))
    with pytest.raises(SystemExit, match="^cannot run the CI renderer with uv .*no-uv-here"):
        post_hook.render_ci(project, "churn_model")
    assert not (project / ".gitlab-ci.yml").exists()


def test_post_hook_renders_with_the_pins_of_the_projects_pyproject(post_hook, tmp_path):
    project = project_with_renderer(tmp_path)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    declared = pyproject["project"]["dependencies"] + pyproject["dependency-groups"]["dev"]
    pins = post_hook.renderer_requirements(project)
    assert [pin.partition("==")[0] for pin in pins] == ["pydantic", "pyyaml", "jinja2"]
    assert set(pins) <= set(declared)


def template_copy(tmp_path: Path) -> Path:
    """What a bake reads of the template, copied so a test may change its environments."""
    copy = tmp_path / "template"
    copy.mkdir()
    for name in ("cookiecutter.json", "local_extensions.py"):
        shutil.copy(TEMPLATE / name, copy / name)
    for name in ("hooks", "environments", "{{cookiecutter.project}}"):
        shutil.copytree(TEMPLATE / name, copy / name)
    return copy


def test_baking_with_a_bad_environment_file_fails_with_one_line_naming_file_and_field(
    cookies, tmp_path, capfd
):
    template = template_copy(tmp_path)
    # No promotion (the strictest, manual) and no gates: the CD engine cannot deploy it.
    (template / "environments" / "canary.yaml").write_text(
        "name: canary\nrequires: production\ndeploy: {target: local, port: 3005}\n"
    )
    result = cookies.bake(template=str(template))
    assert result.exit_code != 0
    assert isinstance(result.exception, FailedHookException)
    [line] = [line for line in capfd.readouterr().err.splitlines() if "canary" in line]
    assert line.startswith("cannot render the CI files from environments/: ")
    assert line.endswith("environments/canary.yaml: field gates: Field required")
    leftovers = [path for path in (tmp_path / "cookies").rglob("*") if path.is_file()]
    assert leftovers == []


def test_post_hook_copies_every_environment_of_the_template(post_hook, tmp_path):
    post_hook.copy_environments(TEMPLATE, tmp_path)
    copied = sorted(path.name for path in (tmp_path / "environments").iterdir())
    assert copied == sorted(path.name for path in (TEMPLATE / "environments").glob("*.yaml"))
    for name in copied:
        assert (tmp_path / "environments" / name).read_bytes() == (
            TEMPLATE / "environments" / name
        ).read_bytes()


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_post_hook_keeps_only_the_suite_of_the_chosen_task(post_hook, tmp_path, task):
    suites = tmp_path / "expectations"
    suites.mkdir()
    for name in ("binary", "multiclass", "regression"):
        (suites / f"{name}.json").write_text(json.dumps({"task": name}))
    post_hook.keep_task_suite(tmp_path, task)
    assert [path.name for path in suites.iterdir()] == ["raw.json"]
    assert json.loads((suites / "raw.json").read_text()) == {"task": task}


def cruft_state(project: Path) -> dict:
    return json.loads((project / ".cruft.json").read_text(encoding="utf-8"))


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def template_checkout(folder: Path, origin: str | None = None) -> Path:
    """A git repository holding a template's cookiecutter.json, one commit deep."""
    folder.mkdir(parents=True)
    shutil.copy(TEMPLATE / "cookiecutter.json", folder / "cookiecutter.json")
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    if origin:
        git(folder, "remote", "add", "origin", origin)
    return folder


def test_post_hook_records_public_answers_verbatim(post_hook, tmp_path):
    given = answers(**HOSTILE)
    post_hook.write_cruft_state(tmp_path, given, TEMPLATE)
    recorded = cruft_state(tmp_path)["context"]["cookiecutter"]
    for key, value in given.items():
        if not key.startswith("_"):
            assert recorded[key] == value
    # The run's own folders are not recorded; what cruft adds is.
    assert sorted(key for key in recorded if key.startswith("_")) == [
        "_commit", "_copy_without_render", "_extensions", "_template"
    ]  # fmt: skip
    # Written as UTF-8 text, not \u escapes, so a person can read and diff it.
    assert "Zoë" in (tmp_path / ".cruft.json").read_text("utf-8")


def test_post_hook_records_the_local_template_checkout_and_its_commit(post_hook, tmp_path):
    template = template_checkout(tmp_path / "template")
    project = tmp_path / "project"
    project.mkdir()
    post_hook.write_cruft_state(project, {**answers(), "_template": "../template"}, template)
    state = cruft_state(project)
    head = git(template, "rev-parse", "HEAD")
    assert (state["template"], state["commit"], state["checkout"]) == (str(template), head, None)
    assert state["context"]["cookiecutter"]["_template"] == str(template)
    assert state["context"]["cookiecutter"]["_commit"] == head


def test_post_hook_warns_when_the_bake_read_uncommitted_template_files(post_hook, tmp_path, capsys):
    template = template_checkout(tmp_path / "template")
    project = tmp_path / "project"
    project.mkdir()
    (template / "notes.txt").write_text("not read by a bake\n")
    post_hook.write_cruft_state(project, answers(), template)
    assert capsys.readouterr().out == ""

    (template / "hooks").mkdir()
    (template / "hooks" / "post_gen_project.py").write_text("# changed, not committed\n")
    post_hook.write_cruft_state(project, answers(), template)
    [line] = capsys.readouterr().out.splitlines()
    assert "has uncommitted changes" in line
    assert git(template, "rev-parse", "HEAD")[:12] in line


def test_post_hook_records_a_remote_templates_clone_url(post_hook, tmp_path):
    """Cookiecutter cloned gh:acme/... : cruft clones the URL that clone came from."""
    url = "https://github.com/acme/ml-gitops-template.git"
    template = template_checkout(tmp_path / "clone", origin=url)
    given = {**answers(), "_template": "gh:acme/ml-gitops-template", "_checkout": "v1"}
    post_hook.write_cruft_state(tmp_path, given, template)
    state = cruft_state(tmp_path)
    assert (state["template"], state["checkout"]) == (url, "v1")


def test_post_hook_without_a_git_checkout_records_the_answers_and_says_how_to_link(
    post_hook, tmp_path, capsys
):
    template = tmp_path / "unpacked"
    template.mkdir()
    shutil.copy(TEMPLATE / "cookiecutter.json", template / "cookiecutter.json")
    post_hook.write_cruft_state(tmp_path, answers(), template)
    state = cruft_state(tmp_path)
    assert (state["template"], state["commit"]) == ("", None)
    assert state["context"]["cookiecutter"]["project"] == "churn-model"
    [line] = capsys.readouterr().out.splitlines()
    assert "is not a git checkout" in line and "make template-update" in line


def test_post_hook_finds_the_template_from_an_absolute_path(post_hook):
    assert post_hook.template_dir(str(TEMPLATE)) == TEMPLATE


def test_post_hook_resolves_a_relative_template_path_against_the_start_folder(
    post_hook, monkeypatch
):
    monkeypatch.setenv("PWD", str(TEMPLATE.parent))
    assert post_hook.template_dir(TEMPLATE.name) == TEMPLATE.parent / TEMPLATE.name


def test_post_hook_stops_naming_the_path_when_the_template_is_not_found(post_hook, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        post_hook.template_dir(str(tmp_path))
    assert "cannot find the template's environments/" in str(stopped.value.code)
    assert str(tmp_path) in str(stopped.value.code)


def rendered_text(inline) -> str:
    """The text a Markdown inline token shows (HTML tags would be dropped, not shown)."""
    parts = []
    for child in inline.children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append("\n")
    return "".join(parts)


def test_hostile_but_valid_answers_bake_and_round_trip(cookies):
    result = cookies.bake(extra_context={**HOSTILE, "git_init": False})
    assert result.exit_code == 0, result.exception
    project: Path = result.project_path
    assert project.name == "zoe-s-quoted-modele"

    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == HOSTILE["description"]
    assert pyproject["project"]["authors"] == [
        {"name": HOSTILE["author"], "email": HOSTILE["email"]}
    ]
    assert "zoe-s-quoted-modele" in pyproject["project"]["scripts"]

    recorded = json.loads((project / ".cruft.json").read_text("utf-8"))["context"]["cookiecutter"]
    assert {key: recorded[key] for key in HOSTILE} == HOSTILE

    # The README as a Markdown renderer shows it: each answer exactly as typed.
    readme = MarkdownIt().parse((project / "README.md").read_text(encoding="utf-8"))
    title = next(t for i, t in enumerate(readme) if readme[i - 1].type == "heading_open")
    assert title.content and rendered_text(title) == HOSTILE["project_name"]
    shown = "\n".join(rendered_text(token) for token in readme if token.type == "inline")
    for value in HOSTILE.values():
        assert value in shown

    for path in project.rglob("*.y*ml"):
        assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None, path


def small_project(folder: Path, python: str) -> Path:
    """A project with no dependencies: locking it needs no index, only an interpreter."""
    project = folder / "small"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "small"\nversion = "0.1.0"\nrequires-python = ">={python}"\n'
    )
    (project / ".python-version").write_text(f"{python}\n")
    return project


def test_post_hook_locks_the_project(post_hook, tmp_path, capsys):
    python = ".".join(map(str, sys.version_info[:2]))
    project = small_project(tmp_path, python)

    assert post_hook.uv_lock(project) is True

    lock = tomllib.loads((project / "uv.lock").read_text())
    assert lock["requires-python"] == f">={python}"
    assert [p["name"] for p in lock["package"]] == ["small"]
    assert capsys.readouterr().out == ""


def test_post_hook_bakes_without_a_lock_saying_make_install_creates_it(post_hook, tmp_path, capsys):
    # No interpreter of this version exists, and the hook downloads none.
    project = small_project(tmp_path, "3.99")

    assert post_hook.uv_lock(project) is False

    assert not (project / "uv.lock").exists()
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("uv.lock not written (No interpreter found for Python 3.99")
    assert line.endswith("): `make install` creates it; commit it")
