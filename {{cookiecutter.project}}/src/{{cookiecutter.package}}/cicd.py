"""Render the CI/CD files of both platforms from environments/*.yaml (`make ci-files`).

The checks are the same jobs on GitHub Actions and GitLab CI, each one make target; the
deploy jobs come from environments/*.yaml, read by the CD engine's own loader
(deploy/environments.py) and ordered by `requires`. The Cookiecutter post-generation hook
runs this module (`python -m <package>.cicd`) in a uv environment holding only pydantic,
PyYAML and Jinja2: it may import nothing heavier than those.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from .config import Paths
from .deploy.environments import Environment, HostDeploy, LocalDeploy, load_all

TEMPLATES = Path(__file__).with_name("cicd_templates")
# Output file -> template, per platform. Keys are the `ci` answers' platform names.
OUTPUTS = {
    "github": {
        ".github/workflows/ci.yml": "github-ci.yml.j2",
        ".github/workflows/cd.yml": "github-cd.yml.j2",
        ".github/workflows/monitor.yml": "github-monitor.yml.j2",
    },
    "gitlab": {".gitlab-ci.yml": "gitlab-ci.yml.j2"},
}
# Files only a monitored project has (see `monitored`): without one, `make ci-files` removes them.
MONITORING_ONLY = {".github/workflows/monitor.yml"}
# params.yaml's monitoring.schedule when it sets none (config.py keeps the same default).
DEFAULT_SCHEDULE = "17 5 * * *"
DEFAULT_BRANCH = "main"
# How `main` starts its one-line refusal; the post-generation hook looks for it.
REFUSED = "cannot render the CI files from environments/: "
UV_VERSION = "0.13.9"
# Pinned by full commit SHA: a moved tag cannot change what runs.
ACTIONS = {
    "checkout": "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0",
    "setup_uv": "astral-sh/setup-uv@e92bafb6253dcd438e0484186d7669ea7a8ca1cc # v6.4.3",
    "upload": "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02 # v4.6.2",
    "download": "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093 # v4.3.0",
    "cache_restore": "actions/cache/restore@0057852bfaa89a56745cba8c7296529d2fc39830 # v4.3.0",
    "cache_save": "actions/cache/save@0057852bfaa89a56745cba8c7296529d2fc39830 # v4.3.0",
}
# What a job hands on to later jobs instead of them rebuilding it.
ARTIFACTS = {
    "data": ["data/", "reports/validation/"],
    "model": ["models/", "mlruns/", "mlruns.db", "reports/evaluation.json", "reports/*.png"],
    "bento": ["dist/"],
}
# upload-artifact stores paths relative to their common folder: for dist/ alone, that is
# dist/ itself, so the download must put the files back there.
DOWNLOAD_PATHS = {"bento": "dist"}
# What the build hands to the first deploy job: the bento's tag and the reports. The bento,
# its model version, smoke rows and every deploy record live in the release store.
BUILD_OUTPUTS = ["dist/bento.json", "reports/"]


@dataclass(frozen=True)
class Job:
    """One CI job: the same name and the same single make target on both platforms."""

    name: str
    target: str
    title: str
    needs_artifacts: tuple[str, ...] = ()
    makes: str | None = None
    reports: bool = True  # writes reports/ (JUnit XML at least) to keep and summarise
    # Targets run after `target` that only report (a warning), never failing the job.
    reporting: tuple[str, ...] = ()
    # Runs mypy (make lint): keeps .mypy_cache/ between pipelines, so a run re-checks only
    # what changed instead of the ~50 s cold analysis of pandas', SciPy's and MLflow's types.
    type_checks: bool = False
    # Parallel jobs that split its test modules (GitLab `parallel:`, a GitHub matrix), each
    # told CI_NODE_INDEX of CI_NODE_TOTAL; tests/shards.py balances them by recorded time.
    shards: int = 1


# The pull/merge-request checks: a graph, the same on both platforms. Lint and unit tests
# run beside the data-to-bento chain; model tests and packaging both after training;
# integration and service tests both after packaging. Listed in the order `make build`
# runs them one after another on the default branch.
CHECKS = (
    # Lint also reports whether the project lags its template (.cruft.json): no job of its own.
    Job("lint", "lint", "Lint", reports=False, reporting=("ci-template-check",), type_checks=True),
    Job("unit", "ci-unit", "Unit tests"),
    Job("data", "ci-data", "Data: validate + data tests", makes="data"),
    Job("train", "ci-train", "Train + evaluate", ("data",), makes="model"),
    Job("model", "ci-model", "Model tests", ("data", "model")),
    Job(
        "package",
        "ci-package",
        "Package + artifact tests + infra check",
        ("data", "model"),
        "bento",
    ),
    # The longest job by far (real deploys, each starting `bentoml serve`): two runners
    # halve the pull request's critical path.
    Job(
        "integration",
        "ci-integration",
        "Integration tests",
        ("data", "model", "bento"),
        shards=2,
    ),
    Job("service", "ci-service", "Service performance", ("data", "model", "bento")),
)
# Which check makes each artifact.
PRODUCERS = {job.makes: job.name for job in CHECKS if job.makes}


def check_needs(job: Job) -> list[str]:
    """The checks `job` waits for, in CHECKS order: those whose artifacts it takes (a job
    tests what the jobs before it made, never a rebuilt twin). What GitHub's `needs` and
    GitLab's `needs` (with their artifacts) both say."""
    taken = {PRODUCERS[kind] for kind in job.needs_artifacts}
    return [other.name for other in CHECKS if other.name in taken]


# On the default branch: every check above on the commit itself, in the same order, then
# the bento built once and released (`make build`).
BUILD = Job("build", "build", "Every check, then build and release the bento", type_checks=True)


@dataclass(frozen=True)
class DeployJob:
    """What an environment's deploy jobs need of its file, as the CD engine loaded it."""

    name: str
    requires: str | None
    promotion: str
    # The lasting address; None for the local target, which a CI job serves on its runner
    # only while it verifies the bento (nothing answers after the job).
    url: str | None
    target: str
    # Labels of the runner the deploy job must run on (GitHub runs-on, GitLab tags): the
    # host target's own machine. Empty: any shared runner.
    runner: tuple[str, ...] = ()

    @classmethod
    def of(cls, environment: Environment) -> DeployJob:
        deploy = environment.deploy
        return cls(
            name=environment.name,
            requires=environment.requires,
            promotion=environment.promotion,
            url=None if isinstance(deploy, LocalDeploy) else environment.url,
            target=deploy.target,
            runner=tuple(deploy.runner) if isinstance(deploy, HostDeploy) else (),
        )

    @property
    def where(self) -> str:
        """How the deploy job's name says where the bento ends up."""
        return "verified on the runner, then stopped" if self.url is None else self.url

    @property
    def first(self) -> bool:
        return self.requires is None

    @property
    def make(self) -> str:
        """The command its deploy job runs: the first environment takes the new bento,
        the others promote the one verified in the environment they require."""
        verb = "deploy" if self.first else "promote"
        return f"make ci-deploy ENV={self.name} ACTION={verb}"


def deploy_jobs(root: Path) -> list[DeployJob]:
    """One deploy job per environment, each after the one it requires (a chain or a tree)."""
    return [DeployJob.of(environment) for environment in load_all(Paths(root)).values()]


def monitored(environments: list[DeployJob]) -> DeployJob | None:
    """The environment CI monitors on a schedule: the last one (production), when it is on a
    host whose runner can read its prediction log. Nothing outlives a local deploy job, and
    a cluster's log stays in its pods, so those have no scheduled monitoring."""
    served = environments[-1]
    return served if served.runner else None


def schedule(root: Path) -> str:
    """params.yaml's monitoring.schedule (cron, UTC), else the default config.py keeps."""
    params = root / "params.yaml"
    data = yaml.safe_load(params.read_text(encoding="utf-8")) if params.exists() else None
    monitoring = (data or {}).get("monitoring") or {}
    return str(monitoring.get("schedule") or DEFAULT_SCHEDULE)


def _environment() -> jinja2.Environment:
    # Bracket delimiters: GitHub's dollar-brace expressions and GitLab's $VARS pass through.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        block_start_string="[%",
        block_end_string="%]",
        variable_start_string="[[",
        variable_end_string="]]",
        comment_start_string="[#",
        comment_end_string="#]",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def render(root: Path, platforms: list[str]) -> dict[str, str]:
    """The text of every CI file of `platforms`, keyed by path relative to `root`."""
    unknown = sorted(set(platforms) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"unknown CI platform(s) {', '.join(unknown)}: use {', '.join(OUTPUTS)}")
    environments = deploy_jobs(root)
    watched = monitored(environments)
    context = {
        "checks": CHECKS,
        "check_needs": {job.name: check_needs(job) for job in CHECKS},
        "build": BUILD,
        "environments": environments,
        "first": environments[0],
        "monitored": watched,
        "schedule": schedule(root),
        "artifacts": ARTIFACTS,
        "download_paths": DOWNLOAD_PATHS,
        "source": f"src/{Path(__file__).parent.name}/cicd.py",
        "build_outputs": BUILD_OUTPUTS,
        "actions": ACTIONS,
        "default_branch": DEFAULT_BRANCH,
        "uv_version": UV_VERSION,
        "python_version": _python_version(root),
    }
    jinja = _environment()
    return {
        output: jinja.get_template(template).render(**context)
        for platform in platforms
        for output, template in OUTPUTS[platform].items()
        if watched or output not in MONITORING_ONLY
    }


def _python_version(root: Path) -> str:
    pinned = root / ".python-version"
    return pinned.read_text(encoding="utf-8").strip() if pinned.exists() else "3.12"


def present_platforms(root: Path) -> list[str]:
    """The platforms whose CI files the project has (what `make ci-files` re-renders)."""
    return [
        platform
        for platform, outputs in OUTPUTS.items()
        if any((root / output).exists() for output in outputs)
    ]


def write(root: Path, platforms: list[str] | None = None) -> list[Path]:
    """Render and write the CI files; default: the platforms the project already has."""
    chosen = platforms or present_platforms(root)
    if not chosen:
        raise FileNotFoundError(
            f"no CI files under {root}: name a platform ({', '.join(OUTPUTS)}) to create them"
        )
    written = []
    rendered = render(root, chosen)
    for output, text in rendered.items():
        path = root / output
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for output in _unrendered(root, chosen, rendered):
        (root / output).unlink()
    return written


def _unrendered(root: Path, platforms: list[str], rendered: dict[str, str]) -> list[str]:
    """Files of `platforms` the project has but a render no longer makes (monitor.yml once
    production leaves its host)."""
    return [
        output
        for platform in platforms
        for output in OUTPUTS[platform]
        if output not in rendered and (root / output).exists()
    ]


def stale(root: Path) -> list[str]:
    """The CI files that differ from a fresh render of environments/*.yaml."""
    platforms = present_platforms(root)
    fresh = render(root, platforms)
    return [
        output
        for output, text in fresh.items()
        if not (root / output).exists() or (root / output).read_text(encoding="utf-8") != text
    ] + _unrendered(root, platforms, fresh)


def main(argv: list[str]) -> int:
    """`python -m <package>.cicd ROOT [PLATFORM...]`: write the CI files of ROOT, as the
    Cookiecutter hook and `make template-update` run it (no CLI dependencies needed). A bad
    environments file is one line on stderr, starting with REFUSED."""
    if not argv:
        print("usage: python -m <package>.cicd ROOT [PLATFORM...]", file=sys.stderr)
        return 2
    try:
        write(Path(argv[0]), argv[1:] or None)
    except (OSError, ValueError) as error:
        # One line, whatever the error quotes (a YAML error spans several).
        print(REFUSED + " ".join(str(error).split()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
