"""Bake every supported ci x task combination and check what comes out, file by file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, run

CIS = ["github+gitlab", "github", "gitlab"]
TASKS = ["binary", "multiclass", "regression"]
COMBINATIONS = [(ci, task) for ci in CIS for task in TASKS]

# Every file a baked project holds ({package} is the import name). When the template gains
# a file, add it here: this list is the reviewed contract of what a user receives.
COMMON_FILES = [
    ".cruft.json",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".python-version",
    "Makefile",
    "README.md",
    "docs/ci.md",
    "docs/dependencies.md",
    "docs/deployment.md",
    "docs/drift-report.png",
    "docs/monitoring.md",
    "docs/release-store.md",
    "docs/security.md",
    "docs/serving.md",
    "docs/template-update.md",
    "environments/preprod.yaml",
    "environments/production.yaml",
    "environments/test.yaml",
    "expectations/raw.json",
    "params.yaml",
    "pyproject.toml",
    "src/{package}/__init__.py",
    "src/{package}/challenge.py",
    "src/{package}/cicd.py",
    "src/{package}/cicd_templates/_github.j2",
    "src/{package}/cicd_templates/github-cd.yml.j2",
    "src/{package}/cicd_templates/github-ci.yml.j2",
    "src/{package}/cicd_templates/github-monitor.yml.j2",
    "src/{package}/cicd_templates/gitlab-ci.yml.j2",
    "src/{package}/cli.py",
    "src/{package}/config.py",
    "src/{package}/data.py",
    "src/{package}/data_docs.py",
    "src/{package}/lock.py",
    "src/{package}/deploy/__init__.py",
    "src/{package}/deploy/checks.py",
    "src/{package}/deploy/engine.py",
    "src/{package}/deploy/environments.py",
    "src/{package}/deploy/kubernetes.py",
    "src/{package}/deploy/kubernetes_manifests.py",
    "src/{package}/deploy/host.py",
    "src/{package}/deploy/local.py",
    "src/{package}/deploy/records.py",
    "src/{package}/deploy/recovery.py",
    "src/{package}/drift.py",
    "src/{package}/evaluate.py",
    "src/{package}/evaluation_report.py",
    "src/{package}/features.py",
    "src/{package}/infra.py",
    "src/{package}/loadtest.py",
    "src/{package}/locustfile.py",
    "src/{package}/middleware.py",
    "src/{package}/model.py",
    "src/{package}/model_card.py",
    "src/{package}/monitor.py",
    "src/{package}/monitor_report.py",
    "src/{package}/package.py",
    "src/{package}/pipeline.py",
    "src/{package}/platforms/__init__.py",
    "src/{package}/platforms/api.py",
    "src/{package}/platforms/github.py",
    "src/{package}/platforms/gitlab.py",
    "src/{package}/platforms/protection.py",
    "src/{package}/platforms/sync.py",
    "src/{package}/plots.py",
    "src/{package}/prediction_log.py",
    "src/{package}/predict.py",
    "src/{package}/registry.py",
    "src/{package}/release_migration.py",
    "src/{package}/release_store.py",
    "src/{package}/replay.py",
    "src/{package}/retraining.py",
    "src/{package}/schema.py",
    "src/{package}/served_data.py",
    "src/{package}/service.py",
    "src/{package}/serving.py",
    "src/{package}/single_row.py",
    "src/{package}/smoke.py",
    "src/{package}/suite_runner.py",
    "src/{package}/summary.py",
    "src/{package}/tables.py",
    "src/{package}/template_update.py",
    "src/{package}/train.py",
    "src/{package}/validation.py",
    "tests/artifacts/test_bento.py",
    "tests/artifacts/test_training_outputs.py",
    "tests/conftest.py",
    "tests/data/test_expectations.py",
    "tests/durations.json",
    "tests/integration/test_batch_predict.py",
    "tests/integration/test_continuous_training.py",
    "tests/integration/conftest.py",
    "tests/integration/deploys.py",
    "tests/integration/fake_platforms.py",
    "tests/integration/test_deploy.py",
    "tests/integration/test_deploy_interrupted.py",
    "tests/integration/test_deploy_metric_gates.py",
    "tests/integration/test_environment_sync.py",
    "tests/integration/test_environment_verify.py",
    "tests/integration/test_infra_check.py",
    "tests/integration/test_kubernetes_deploy.py",
    "tests/integration/test_loadtest.py",
    "tests/integration/test_monitoring.py",
    "tests/integration/test_package_stage.py",
    "tests/integration/test_release_migration.py",
    "tests/integration/test_release_store.py",
    "tests/integration/test_served_bento.py",
    "tests/model/conftest.py",
    "tests/model/test_drift_calibration.py",
    "tests/model/test_gates.py",
    "tests/model/test_invariance.py",
    "tests/model/test_own_data.py",
    "tests/model/test_reproducibility.py",
    "tests/service/test_bad_requests.py",
    "tests/service/test_request_properties.py",
    "tests/shards.py",
    "tests/unit/deploy_targets.py",
    "tests/unit/test_challenge_decision.py",
    "tests/unit/test_cli_adapters.py",
    "tests/unit/test_cli_errors.py",
    "tests/unit/test_cicd.py",
    "tests/unit/test_config.py",
    "tests/unit/test_data.py",
    "tests/unit/test_deploy_records.py",
    "tests/unit/test_drift.py",
    "tests/unit/test_environment_files.py",
    "tests/unit/test_features.py",
    "tests/unit/test_host_target.py",
    "tests/unit/test_kubernetes.py",
    "tests/unit/test_layers.py",
    "tests/unit/test_lock.py",
    "tests/unit/test_makefile_gates.py",
    "tests/unit/test_makefile_inputs.py",
    "tests/unit/test_metric_gates.py",
    "tests/unit/test_predict.py",
    "tests/unit/test_release_store_server.py",
    "tests/unit/test_results.py",
    "tests/unit/test_schema.py",
    "tests/unit/test_server_ownership.py",
    "tests/unit/test_shards.py",
    "tests/unit/test_single_row.py",
    "tests/unit/test_summary.py",
    "tests/unit/test_template_update.py",
    # Written by the post-gen hook (uv lock); a bake for a Python with no interpreter here
    # goes without it (test_hooks.py), and `make install` writes it.
    "uv.lock",
]
CI_FILES = {
    "github": [".github/workflows/cd.yml", ".github/workflows/ci.yml"],
    "gitlab": [".gitlab-ci.yml"],
}
# Jinja left in a file means a template bug; GitHub's own ${{ }} expressions are legitimate.
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{|\{%|\{#")
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w.-]+)?@[0-9a-f]{40}$")


def expected_files(ci: str, package: str) -> set[str]:
    files = [name.format(package=package) for name in COMMON_FILES]
    for platform in ci.split("+"):
        files += CI_FILES[platform]
    return set(files)


def project_files(project: Path) -> list[Path]:
    return sorted(
        path
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts[:1]
    )


def staged_cleanly(project: Path) -> list[str]:
    """Lines of `git status --porcelain` that are anything but a staged, unmodified file."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in status.splitlines() if not (line[0] == "A" and line[1] == " ")]


@pytest.fixture(
    scope="module",
    params=COMBINATIONS,
    ids=[f"{ci}-{task}" for ci, task in COMBINATIONS],
)
def baked(request, cookies_session):
    """One project per combination, baked once and shared by this module's tests."""
    ci, task = request.param
    result = cookies_session.bake(extra_context={"ci": ci, "task": task, "git_init": True})
    assert result.exit_code == 0, result.exception
    return result


def test_bake_produces_exactly_the_expected_files(baked):
    answers = baked.context
    project = baked.project_path
    actual = {path.relative_to(project).as_posix() for path in project_files(project)}
    expected = expected_files(answers["ci"], answers["package"])
    missing, unexpected = sorted(expected - actual), sorted(actual - expected)
    assert not missing and not unexpected, f"missing: {missing}\nunexpected: {unexpected}"


def test_no_file_keeps_jinja_syntax(baked):
    leftovers = []
    for path in project_files(baked.project_path):
        if path.suffix == ".png" and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"):
            continue  # the README's pictures, copied without rendering
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            leftovers.append(f"{path}: not UTF-8 text (a stray binary in the template?)")
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if JINJA_LEFTOVER.search(line):
                leftovers.append(f"{path.name}:{number}: {line.strip()}")
    assert leftovers == []


def test_pyproject_parses_and_names_the_console_script(baked):
    answers = baked.context
    pyproject = tomllib.loads((baked.project_path / "pyproject.toml").read_text("utf-8"))
    assert pyproject["project"]["name"] == answers["project"]
    assert pyproject["project"]["scripts"] == {answers["project"]: f"{answers['package']}.cli:main"}
    assert pyproject["project"]["requires-python"] == f">={answers['python_version']}"


def test_the_lock_is_baked_and_matches_pyproject(baked):
    """uv.lock is committed with the project and current: `uv sync --locked` accepts it."""
    project = baked.project_path
    checked = run(
        ["uv", "--directory", str(project), "lock", "--check", "--offline"], project.parent
    )
    assert checked.returncode == 0, checked.stdout
    lock = tomllib.loads((project / "uv.lock").read_text("utf-8"))
    pyproject = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    assert lock["requires-python"] == f">={baked.context['python_version']}"
    locked = {p["name"]: p["version"] for p in lock["package"]}
    for pin in pyproject["project"]["dependencies"]:
        name, version = pin.split("==")
        assert locked[name] == version, pin
    # The build backend is pinned too, with its own dependencies (the lock covers neither).
    build = dict(pin.split("==") for pin in pyproject["build-system"]["requires"])
    assert set(build) == {"hatchling", "packaging", "pathspec", "pluggy", "tomlkit",
                          "trove-classifiers"}  # fmt: skip
    assert all(re.fullmatch(r"[\d.]+", version) for version in build.values()), build


def test_every_yaml_file_parses(baked):
    documents = list(baked.project_path.rglob("*.y*ml"))
    assert documents
    for path in documents:
        assert isinstance(yaml.safe_load(path.read_text("utf-8")), dict), path


def test_cruft_state_records_the_answers_the_template_and_its_commit(baked):
    """.cruft.json: what `make template-update` needs, and no path but the template's."""
    answers = baked.context
    state = json.loads((baked.project_path / ".cruft.json").read_text("utf-8"))
    recorded = state["context"]["cookiecutter"]
    for key in ("project_name", "project", "package", "description", "author", "email"):
        assert recorded[key] == answers[key]
    assert (recorded["ci"], recorded["task"], recorded["git_init"]) == (
        answers["ci"],
        answers["task"],
        True,
    )
    head = run(["git", "rev-parse", "HEAD"], TEMPLATE).stdout.strip()
    assert (state["template"], state["commit"], state["directory"]) == (str(TEMPLATE), head, None)
    assert (recorded["_template"], recorded["_commit"]) == (str(TEMPLATE), head)
    # The run's own folders (_repo_dir, _output_dir) are not recorded.
    absolute = {key: value for key, value in recorded.items() if str(value).startswith("/")}
    assert absolute == {"_template": str(TEMPLATE)}


def test_environments_are_copied_from_the_template(baked):
    environments = baked.project_path / "environments"
    names = sorted(path.stem for path in environments.glob("*.yaml"))
    assert names == ["preprod", "production", "test"]
    for name in names:
        assert yaml.safe_load((environments / f"{name}.yaml").read_text("utf-8"))["name"] == name


def test_only_the_chosen_tasks_suite_is_kept_as_raw_json(baked):
    suites = baked.project_path / "expectations"
    assert [path.name for path in suites.iterdir()] == ["raw.json"]
    assert json.loads((suites / "raw.json").read_text("utf-8"))


def test_params_name_the_chosen_task(baked):
    params = yaml.safe_load((baked.project_path / "params.yaml").read_text("utf-8"))
    assert params["task"] == baked.context["task"]


def ci_targets(project: Path) -> dict[str, list[str]]:
    """The make targets each generated CI system's checks run, in order, setup left out."""
    targets = {}
    github = project / ".github" / "workflows" / "ci.yml"
    if github.exists():
        workflow = yaml.safe_load(github.read_text("utf-8"))
        steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
        for step in steps:
            if "uses" in step:
                assert PINNED_ACTION.match(step["uses"]), f"not pinned by SHA: {step['uses']}"
        runs = [step.get("run", "") for step in steps]
        targets["github"] = [t for run in runs for t in re.findall(r"^make (\S+)", run, re.M)]
    gitlab = project / ".gitlab-ci.yml"
    if gitlab.exists():
        pipeline = yaml.safe_load(gitlab.read_text("utf-8"))
        lines = []
        for stage in pipeline["stages"]:
            for job in pipeline.values():
                if (
                    isinstance(job, dict)
                    and job.get("stage") == stage
                    and job.get("extends") == ".check"
                ):
                    lines += job["script"]
        targets["gitlab"] = [t for line in lines for t in re.findall(r"^make (\S+)", line)]
    return {
        platform: [t for t in called if t not in ("ci-install", "summary", "ci-template-check")]
        for platform, called in targets.items()
    }


CHECK_TARGETS = ["lint", "ci-unit", "ci-data", "ci-train", "ci-model", "ci-package"]
CHECK_TARGETS += ["ci-integration", "ci-service"]


def test_ci_runs_make_targets_in_the_same_order_on_every_platform(baked):
    targets = ci_targets(baked.project_path)
    assert sorted(targets) == sorted(baked.context["ci"].split("+"))
    for platform, called in targets.items():
        assert called == CHECK_TARGETS, platform


def test_ci_targets_exist_in_the_makefile(baked):
    makefile = (baked.project_path / "Makefile").read_text("utf-8")
    for called in ci_targets(baked.project_path).values():
        for target in called:
            assert re.search(rf"^{target}:.*## ", makefile, re.M), target


def test_make_targets_run_python_with_bytecode_caching_on(baked):
    """Where CI sets PYTHONDONTWRITEBYTECODE, every Python process a target starts would
    recompile its imports: the Makefile does not pass it on."""
    rule = 'shown: ; @echo "[$${PYTHONDONTWRITEBYTECODE-}]"'
    command = ["env", "PYTHONDONTWRITEBYTECODE=1", "make", "--no-print-directory"]
    shown = run([*command, "--eval", rule, "shown"], cwd=baked.project_path)
    assert shown.returncode == 0, shown.stdout
    assert shown.stdout.strip() == "[]"


def test_git_init_stages_every_file(baked):
    assert (baked.project_path / ".git").is_dir()
    assert staged_cleanly(baked.project_path) == []


def test_project_passes_its_own_pre_commit_without_changes(baked):
    """The baked project is already clean: no fix-up commit after the first `make lint`."""
    project = baked.project_path
    checked = run([sys.executable, "-m", "pre_commit", "run", "--all-files"], cwd=project)
    assert checked.returncode == 0, checked.stdout
    assert staged_cleanly(project) == []


@pytest.fixture(scope="module")
def mypy_checker(cookies_session, tmp_path_factory) -> tuple[Path, Path]:
    """The Python of a venv holding the generated project's dev tools (mypy, the stubs), and
    one mypy cache for every check: the ci x task combinations lock the same dependencies and
    bake the same package code, so each check after the first re-reads only what differs."""
    result = cookies_session.bake(extra_context={"git_init": False})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    synced = run(["uv", "sync", "--locked", "--group", "dev"], project, timeout=900)
    assert synced.returncode == 0, synced.stdout
    return project / ".venv" / "bin" / "python", tmp_path_factory.mktemp("mypy-cache")


def test_package_passes_mypy_strict(baked, mypy_checker):
    """`make lint`'s type check ([tool.mypy]: strict on the package) passes as baked."""
    python, cache = mypy_checker
    version = baked.context["python_version"]
    command = [str(python), "-m", "mypy", "--cache-dir", str(cache), "--python-version", version]
    checked = run(command, baked.project_path, timeout=900)
    assert checked.returncode == 0, checked.stdout
    assert "Success: no issues found" in checked.stdout


@pytest.mark.parametrize(
    "version", json.loads((TEMPLATE / "cookiecutter.json").read_text())["python_version"]
)
def test_package_passes_mypy_strict_for_each_supported_python(mypy_checker, version):
    """The package is the same for either python_version answer; the standard library it is
    checked against is not (mypy reads typeshed for the version asked)."""
    python, cache = mypy_checker
    project = python.parent.parent.parent
    command = [str(python), "-m", "mypy", "--cache-dir", str(cache), "--python-version", version]
    checked = run(command, project, timeout=900)
    assert checked.returncode == 0, checked.stdout
