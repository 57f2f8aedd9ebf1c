"""The CI files are rendered from environments/*.yaml: committed files must match a render."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from deploy_targets import CLUSTER, HOST

from {{ cookiecutter.package }} import cicd

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_committed_ci_files_match_a_fresh_render_of_the_environments():
    assert cicd.present_platforms(PROJECT_ROOT), "no CI files in the project"
    stale = cicd.stale(PROJECT_ROOT)
    assert not stale, f"{', '.join(stale)} differ from environments/*.yaml: run `make ci-files`"


def listed(needs) -> list[str]:
    return [needs] if isinstance(needs, str) else list(needs or [])


def test_the_checks_are_one_graph_on_both_platforms(tmp_path: Path):
    shutil.copytree(PROJECT_ROOT / "environments", tmp_path / "environments")
    files = cicd.render(tmp_path, ["github", "gitlab"])
    github = yaml.safe_load(files[".github/workflows/ci.yml"])["jobs"]
    gitlab = yaml.safe_load(files[".gitlab-ci.yml"])

    assert list(github) == [job.name for job in cicd.CHECKS]
    github_graph = {name: listed(job.get("needs")) for name, job in github.items()}
    gitlab_graph = {name: [need["job"] for need in gitlab[name]["needs"]] for name in github}
    assert github_graph == gitlab_graph
    # Not a chain: lint, unit tests and the data-to-bento chain start together; model tests
    # and packaging both wait for training only; integration and service tests for packaging.
    # Each takes the outputs of the stages it tests (data, model, bento) from their jobs.
    assert github_graph == {
        "lint": [], "unit": [], "data": [], "train": ["data"], "model": ["data", "train"],
        "package": ["data", "train"], "integration": ["data", "train", "package"],
        "service": ["data", "train", "package"],
    }  # fmt: skip
    # What a job downloads on GitHub is what it takes from the jobs it needs on GitLab.
    for name, job in github.items():
        downloads = [s["with"]["name"] for s in job["steps"] if "download" in s.get("uses", "")]
        takes = [need["job"] for need in gitlab[name]["needs"] if need["artifacts"]]
        assert sorted(cicd.PRODUCERS[kind] for kind in downloads) == sorted(takes), name
    # A check split over parallel jobs is split alike: a GitHub matrix of shards with
    # CI_NODE_INDEX/CI_NODE_TOTAL set as GitLab's `parallel:` sets them.
    for check in cicd.CHECKS:
        github_shards = github[check.name].get("strategy", {}).get("matrix", {}).get("shard", [1])
        assert github_shards == list(range(1, check.shards + 1)), check.name
        assert gitlab[check.name].get("parallel", 1) == check.shards, check.name
        if check.shards > 1:
            env = github[check.name]["env"]
            assert env["CI_NODE_TOTAL"] == check.shards and "matrix.shard" in env["CI_NODE_INDEX"]
    assert {check.name: check.shards for check in cicd.CHECKS if check.shards > 1} == {
        "integration": 2
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "environments", tmp_path / "environments")
    return tmp_path


def add_environment(project: Path, name: str, requires: str | None, promotion: str, port: int):
    document = {
        "name": name,
        "requires": requires,
        "promotion": promotion,
        "gates": {"latency_p99_ms": 800, "min_rps": 10, "load_test": {"users": 2, "seconds": 5}},
        "deploy": {"target": "local", "port": port},
    }
    (project / "environments" / f"{name}.yaml").write_text(yaml.safe_dump(document))


def test_environments_are_ordered_by_what_they_require(project: Path):
    add_environment(project, "staging", "preprod", "semi-auto", 3004)
    production = yaml.safe_load((project / "environments" / "production.yaml").read_text())
    production["requires"] = "staging"
    (project / "environments" / "production.yaml").write_text(yaml.safe_dump(production))
    names = [env.name for env in cicd.deploy_jobs(project)]
    assert names == ["test", "preprod", "staging", "production"]


def test_a_new_environment_gets_a_deploy_job_on_both_platforms(project: Path):
    add_environment(project, "canary", "production", "manual", 3005)
    files = cicd.render(project, ["github", "gitlab"])
    cd = yaml.safe_load(files[".github/workflows/cd.yml"])
    assert cd["jobs"]["deploy-canary"]["needs"] == "deploy-production"
    assert cd["jobs"]["deploy-canary"]["concurrency"]["group"] == "deploy-canary"
    gitlab = yaml.safe_load(files[".gitlab-ci.yml"])
    assert gitlab["deploy-canary"]["needs"] == [{"job": "deploy-production", "artifacts": False}]
    assert gitlab["deploy-canary"]["resource_group"] == "canary"
    assert gitlab["deploy-canary"]["allow_failure"] is False


# What a bad file gets from the renderer (and every other consumer): test_environment_files.py.


def test_cluster_credentials_reach_only_that_environments_deploy_jobs(project: Path):
    production = yaml.safe_load((project / "environments" / "production.yaml").read_text())
    production["deploy"] = CLUSTER
    (project / "environments" / "production.yaml").write_text(yaml.safe_dump(production))
    files = cicd.render(project, ["github"])
    assert "secrets." not in files[".github/workflows/ci.yml"]
    jobs = yaml.safe_load(files[".github/workflows/cd.yml"])["jobs"]
    with_cluster = sorted(name for name, job in jobs.items() if "secrets.KUBECONFIG" in str(job))
    assert with_cluster == ["deploy-production", "dispatch-production"]
    # The release store reaches the jobs that build or deploy, and only those.
    with_store = {name for name, job in jobs.items() if "secrets.MLFLOW_TRACKING_URI" in str(job)}
    assert with_store == set(jobs)
    assert jobs["deploy-production"]["environment"]["url"] == "https://churn.example.com"


def test_a_local_environment_claims_no_url_and_says_it_is_only_verified_on_the_runner(
    project: Path,
):
    files = cicd.render(project, ["github", "gitlab"])
    jobs = yaml.safe_load(files[".github/workflows/cd.yml"])["jobs"]
    gitlab = yaml.safe_load(files[".gitlab-ci.yml"])

    assert jobs["deploy-test"]["environment"] == {"name": "test"}
    assert jobs["deploy-test"]["name"].endswith("(auto; verified on the runner, then stopped)")
    assert gitlab["deploy-test"]["environment"] == {"name": "test"}
    assert "127.0.0.1" not in files[".github/workflows/cd.yml"] + files[".gitlab-ci.yml"]


def test_a_lasting_host_gets_its_runner_and_url_on_both_platforms(project: Path):
    production = yaml.safe_load((project / "environments" / "production.yaml").read_text())
    production["deploy"] = HOST
    (project / "environments" / "production.yaml").write_text(yaml.safe_dump(production))
    files = cicd.render(project, ["github", "gitlab"])
    jobs = yaml.safe_load(files[".github/workflows/cd.yml"])["jobs"]
    gitlab = yaml.safe_load(files[".gitlab-ci.yml"])

    for job in ("deploy-production", "dispatch-production"):
        assert jobs[job]["runs-on"] == ["self-hosted", "ml-production"]
        assert jobs[job]["environment"]["url"] == "https://churn.example.com"
        assert gitlab[job]["tags"] == ["self-hosted", "ml-production"]
        assert gitlab[job]["environment"]["url"] == "https://churn.example.com"
    assert jobs["deploy-production"]["name"].endswith("(manual; https://churn.example.com)")
    # The other environments stay on shared runners.
    assert jobs["deploy-test"]["runs-on"] == "ubuntu-latest"
    assert "tags" not in gitlab["deploy-test"]


def host_production(project: Path) -> None:
    production = yaml.safe_load((project / "environments" / "production.yaml").read_text())
    production["deploy"] = HOST
    (project / "environments" / "production.yaml").write_text(yaml.safe_dump(production))


SCHEDULED = '$CI_PIPELINE_SOURCE == "schedule" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH'


def test_production_on_a_host_is_monitored_on_a_schedule_on_both_platforms(project: Path):
    (project / "params.yaml").write_text(yaml.safe_dump({"monitoring": {"schedule": "5 4 * * 1"}}))
    host_production(project)
    files = cicd.render(project, ["github", "gitlab"])
    monitor = yaml.safe_load(files[".github/workflows/monitor.yml"])
    gitlab = yaml.safe_load(files[".gitlab-ci.yml"])

    # A workflow of its own: a schedule GitHub disables never touches ci.yml or cd.yml.
    assert monitor[True]["schedule"] == [{"cron": "5 4 * * 1"}]
    assert set(monitor[True]) == {"schedule", "workflow_dispatch"}
    jobs = monitor["jobs"]
    assert list(jobs) == ["monitor", "retrain", "deploy-test"]
    # Monitored where the log is, on production's own runner; retrained on a shared one.
    assert jobs["monitor"]["runs-on"] == ["self-hosted", "ml-production"]
    assert jobs["retrain"]["runs-on"] == "ubuntu-latest"
    assert "make ci-monitor ENV=production" in [s.get("run") for s in jobs["monitor"]["steps"]]
    assert "make ci-retrain" in [s.get("run") for s in jobs["retrain"]["steps"]]
    assert jobs["retrain"]["if"].startswith("needs.monitor.outputs.retrain == 'true'")
    assert jobs["deploy-test"]["if"] == "needs.retrain.outputs.winner == 'true'"
    assert jobs["deploy-test"]["environment"] == {"name": "test"}
    assert "make ci-deploy-winner ENV=test" in [s.get("run") for s in jobs["deploy-test"]["steps"]]
    # No approval-holding environment on the scheduled monitor: only the store's secrets.
    assert jobs["monitor"]["environment"] == jobs["retrain"]["environment"] == "release-store"

    assert gitlab["stages"][-3:] == ["monitor", "retrain", "deploy-winner"]
    assert gitlab["monitor"]["tags"] == ["self-hosted", "ml-production"]
    assert gitlab["monitor"]["script"] == ["make ci-monitor ENV=production"]
    assert gitlab["retrain"]["script"] == ["make ci-retrain"]
    assert gitlab["deploy-winner-test"]["script"] == ["make ci-deploy-winner ENV=test"]
    for job in ("monitor", "retrain", "deploy-winner-test"):
        assert gitlab[job]["rules"] == [{"if": SCHEDULED}]
    # Every other job stays out of a scheduled pipeline.
    others = [name for name, job in gitlab.items() if isinstance(job, dict) and "script" in job]
    for name in set(others) - {"monitor", "retrain", "deploy-winner-test"}:
        rules = gitlab[name].get("rules") or gitlab[gitlab[name]["extends"]]["rules"]
        assert all("schedule" not in rule["if"] for rule in rules), name


def test_a_project_served_on_the_runner_has_no_scheduled_monitoring(project: Path):
    files = cicd.render(project, ["github", "gitlab"])
    assert ".github/workflows/monitor.yml" not in files
    gitlab = yaml.safe_load(files[".gitlab-ci.yml"])
    assert "monitor" not in gitlab and "monitor" not in gitlab["stages"]


def test_make_ci_removes_the_monitor_workflow_once_production_leaves_its_host(project: Path):
    (project / ".github" / "workflows").mkdir(parents=True)
    (project / ".github" / "workflows" / "ci.yml").write_text("")
    host_production(project)
    cicd.write(project)
    monitor = project / ".github" / "workflows" / "monitor.yml"
    assert monitor.exists() and cicd.stale(project) == []

    shutil.copy(PROJECT_ROOT / "environments" / "production.yaml", project / "environments")
    assert ".github/workflows/monitor.yml" in cicd.stale(project)
    cicd.write(project)
    assert not monitor.exists() and cicd.stale(project) == []
