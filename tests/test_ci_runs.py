"""The generated CI/CD files, run for real: GitLab CI under gitlab-ci-local, GitHub Actions
under act, both on this machine, on one baked default project (ci=github+gitlab).

Slow (minutes per pipeline): every job installs the project and the jobs train, package,
serve and deploy a real model. The deploy jobs serve on the environments' ports 3001-3003,
so this module's pipelines run one at a time (`make test` gives a module to one xdist
worker), and each checks nothing is left listening there. The runs that deploy nothing
(pull and merge requests, the data-stop runs) are in tests/test_ci_check_runs.py and run
beside them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import numpy as np
import pandas as pd
import pytest
import yaml
from ci_runners import (
    DEPLOY_PORTS,
    GITHUB_REMOTE,
    GITLAB_REMOTE,
    assert_no_servers_left,
    assert_passed,
    clone,
    execute,
    git,
    github_repository,
    gitlab_artifacts,
    gitlab_jobs,
    gitlab_options,
    keep_one_module_per_layer,
    pipeline_clone,
    run_act,
    run_gitlab,
    servers_on,
    steady_load,
    stop_host,
    stop_servers_started_under,
    supervisorctl,
    workflow_jobs,
)
from conftest import project_renderer
from mlflow import MlflowClient
from release_store import ReleaseStore, deploys

# Part of `make test`; `make test-ci-runs` runs only these.
pytestmark = [pytest.mark.slow, pytest.mark.ci_run, pytest.mark.release_store]

ENVIRONMENTS = ["test", "preprod", "production"]
PROJECT = "churn-model"
# What one push to main records: (environment, action), in order.
PUSH_STEPS = [("test", "deploy"), ("preprod", "promote"), ("production", "promote")]
# A model that still passes the thresholds and the baseline, but trails the default one
# by more than the 2% tolerance on roc_auc (0.964 against 0.994 on the held-out rows).
WORSE_MODEL = {"n_estimators: 200": "n_estimators: 2", "learning_rate: 0.05": "learning_rate: 0.5",
               "num_leaves: 15": "num_leaves: 3"}  # fmt: skip


@pytest.fixture
def deploy_ports_stay_free(tmp_path):
    """Refuse to start while another process serves on 3001-3003; stop what a run left.
    Every test that deploys there uses it (this module runs on one xdist worker)."""
    busy = servers_on(DEPLOY_PORTS)
    assert not busy, f"ports already in use (port: pid): {busy}; stop those servers first"
    yield
    stop_servers_started_under(DEPLOY_PORTS, tmp_path)


def checkout_branch(repo: Path, branch: str) -> None:
    git(repo, "switch", "-q", "-c", branch)
    git(repo, "commit", "-q", "--allow-empty", "-m", "Retrain")


@dataclass
class PlatformApi:
    """Local stand-ins of GitHub's and GitLab's REST APIs, as the deploy jobs reach them."""

    # The baked project's fake_platforms servers, imported at run time.
    github: Any
    gitlab: Any
    github_url: str
    gitlab_url: str
    token: str

    def gitlab_variables(self) -> dict[str, str]:
        return {
            # gitlab-ci-local marks its jobs GITLAB_CI=false; GitLab's runners say true.
            "GITLAB_CI": "true",
            "CI_API_V4_URL": f"{self.gitlab_url}/api/v4",
            "CI_PROJECT_ID": "77",
            "GITLAB_TOKEN": self.token,
        }

    def checked(self, platform: str) -> list[str]:
        """The environments whose protection the deploy jobs read, in order."""
        fake = self.github if platform == "github" else self.gitlab
        pattern = r".*/(?:environments|protected_environments)/([a-z-]+)$"
        return [
            m[1] for r in fake.requests if r.method == "GET" and (m := re.match(pattern, r.path))
        ]


@pytest.fixture
def platform_api(ci_project) -> Iterator[PlatformApi]:
    """The baked project's own API stand-ins (tests/integration/fake_platforms.py), holding
    preprod and production protected as `environments sync` leaves them."""
    sys.path.insert(0, str(ci_project / "tests" / "integration"))
    import fake_platforms as fakes  # type: ignore[import-not-found]  # (on sys.path just above)

    github = fakes.FakeGitHub(repository="ml-team/churn-model")
    branch_only = {"protected_branches": False, "custom_branch_policies": True}
    gitlab = fakes.FakeGitLab()
    maintainers = {"access_level": 40}
    for name, self_review in (("preprod", False), ("production", True)):
        github.environments[name] = {
            "wait_timer": 0,
            "prevent_self_review": self_review,
            "reviewers": [{"type": "User", "id": 1}],
            "deployment_branch_policy": branch_only,
        }
        github.policies[name] = [{"id": github.new_id(), "name": "main", "type": "branch"}]
        # Semi-auto preprod: protected (who may click), no approval rule (the click is it).
        rules = [{**maintainers, "required_approvals": 1}] if self_review else []
        gitlab.protected[name] = {
            "name": name,
            "deploy_access_levels": [gitlab.entry(maintainers)],
            "approval_rules": [gitlab.entry(rule, rule=True) for rule in rules],
        }
    gitlab.project.update(
        allow_pipeline_trigger_approve_deployment=False,
        restrict_user_defined_variables=True,
        ci_pipeline_variables_minimum_override_role="maintainer",
    )
    with fakes.Server(github) as on_github, fakes.Server(gitlab) as on_gitlab:
        yield PlatformApi(github, gitlab, on_github.url, on_gitlab.url, fakes.TOKEN)


def aliases(store: ReleaseStore) -> dict[str, str]:
    """Environment -> the model version aliased after it."""
    model = MlflowClient(store.uri).get_registered_model(PROJECT)
    return {alias: str(version) for alias, version in model.aliases.items()}


def assert_released(store: ReleaseStore, tag: str) -> str:
    """The bento's archive is in the bucket, and its bytes match the digest its model
    version records; returns the model version."""
    client = MlflowClient(store.uri)
    key = f"bento.{tag.partition(':')[2]}"
    [version] = client.search_model_versions(f"name = '{PROJECT}' and tags.`{key}.sha256` != ''")
    archive = version.tags[f"{key}.archive"].rpartition("/")[2]
    [object_key] = [k for k in store.objects() if k.endswith(f"/bentos/{archive}")]
    digest = hashlib.sha256(store.read(object_key)).hexdigest()
    assert digest == version.tags[f"{key}.sha256"], (tag, object_key)
    return str(version.version)


def built_bento(folder: Path) -> str:
    """The tag in a build's dist/bento.json (the only thing a build hands on)."""
    return json.loads((folder / "dist" / "bento.json").read_text())["tag"]


def commit_worse_model(repo: Path) -> None:
    params = repo / "params.yaml"
    text = params.read_text()
    for old, new in WORSE_MODEL.items():
        assert old in text, old
        text = text.replace(old, new)
    params.write_text(text)
    git(repo, "commit", "-q", "-am", "Smaller model")


def revert_last_commit(repo: Path) -> None:
    git(repo, "revert", "--no-edit", "HEAD")


@pytest.mark.usefixtures("deploy_ports_stay_free")
def test_gitlab_promotion_across_pushes_lives_in_the_release_store(
    ci_project, tmp_path, store, lasting_host, platform_api
):
    """Successive pipelines on main, each starting from nothing but the repository and the
    release store's variable: pushes, then Run pipeline with DEPLOY_* variables, then the
    schedule. Preprod and production deploy only while GitLab (its API stand-in) protects
    them; production lives on a lasting host, where the scheduled monitor reads its log."""
    repo = pipeline_clone(ci_project, tmp_path, GITLAB_REMOTE)
    keep_one_module_per_layer(repo)
    move_production_to_a_host(repo, lasting_host)
    variables = {"MLFLOW_TRACKING_URI": store.uri, **platform_api.gitlab_variables()}
    push = gitlab_options(variables)
    planned = gitlab_jobs(repo, push)
    manual = [job["name"] for job in planned if job["when"] == "manual"]
    assert manual == ["deploy-preprod", "deploy-production"], planned

    platform_variables = variables

    def run_by_hand(environment: str, action: str, bento: str = ""):
        variables = {"CI_PIPELINE_SOURCE": "web", "DEPLOY_ENVIRONMENT": environment}
        variables |= {"DEPLOY_ACTION": action, "DEPLOY_BENTO": bento}
        return run_gitlab(repo, gitlab_options({**platform_variables, **variables}))

    # Push 1: bento A through test, preprod and production.
    run = run_gitlab(repo, push, manual=manual)
    assert_passed(run, {job["name"] for job in planned})
    a = built_bento(gitlab_artifacts(repo, "build"))
    assert deploys(store) == [(env, verb, a, "FINISHED") for env, verb in PUSH_STEPS]
    version_a = assert_released(store, a)
    assert aliases(store) == dict.fromkeys(ENVIRONMENTS, version_a)
    assert platform_api.checked("gitlab") == ["preprod", "production"]
    assert_no_servers_left(tmp_path)

    # Push 2: a worse model fails the evaluate stage's no-regression gate against A.
    commit_worse_model(repo)
    run = run_gitlab(repo, push, manual=manual)
    assert run.returncode != 0 and run.jobs == {"build": "failed"}, run.tail()
    assert re.search(
        rf"production roc_auc: 0\.9\d+ trails production version {version_a} \(0\.9\d+\) by 0\.0\d+",
        run.output,
    ), run.tail()
    assert len(deploys(store)) == 3 and aliases(store) == dict.fromkeys(ENVIRONMENTS, version_a)
    # Its lint re-checked with the mypy cache push 1's build left (the job's `cache:`).
    assert re.search(r"^build +imported cache '\d+_mypy-", run.output, re.M), run.tail()

    # Push 3, the worse model reverted: bento B reaches test; preprod waits for its click.
    revert_last_commit(repo)
    run = run_gitlab(repo, push)
    assert_passed(run, {"build", "deploy-test"})
    b = built_bento(gitlab_artifacts(repo, "build"))
    version_b = assert_released(store, b)
    assert deploys(store)[-1] == ("test", "deploy", b, "FINISHED")

    # Run pipeline: B, verified only in test, is refused by production; nothing recorded.
    run = run_by_hand("production", "deploy", b)
    assert run.jobs == {"dispatch-production": "failed"}, run.tail()
    assert f"bento {b} has not been verified in preprod" in run.output, run.tail()
    assert len(deploys(store)) == 4 and aliases(store)["production"] == version_a

    # Run pipeline twice: B promoted to preprod, then production, from records of push 3.
    for environment in ("preprod", "production"):
        assert_passed(run_by_hand(environment, "promote"), {f"dispatch-{environment}"})
    assert deploys(store)[-2:] == [
        ("preprod", "promote", b, "FINISHED"),
        ("production", "promote", b, "FINISHED"),
    ]
    assert aliases(store) == dict.fromkeys(ENVIRONMENTS, version_b)

    # Run pipeline, production's protection removed by hand: the rollback stops before
    # deploying, naming the command that applies it; nothing is recorded.
    protected = platform_api.gitlab.protected.pop("production")
    run = run_by_hand("production", "rollback")
    assert run.jobs == {"dispatch-production": "failed"}, run.tail()
    assert "production is manual but gitlab does not hold it" in run.output, run.tail()
    assert "make environments-sync PLATFORM=gitlab" in run.output, run.tail()
    assert len(deploys(store)) == 6
    platform_api.gitlab.protected["production"] = protected

    # Run pipeline: roll production back to A, which a pipeline three pushes ago built.
    assert_passed(run_by_hand("production", "rollback"), {"dispatch-production"})
    assert deploys(store)[-1] == ("production", "rollback", a, "FINISHED")
    assert aliases(store) == {"test": version_b, "preprod": version_b, "production": version_a}
    assert host_serving(lasting_host)["bento"] == a
    assert_no_servers_left(tmp_path)

    # The schedule (a pipeline schedule on main): see assert_a_challenger_reaches_test.
    commit_relabelled_data(repo)
    serve_labelled_traffic(repo, tmp_path, GITLAB_REMOTE)
    scheduled = gitlab_options({**variables, "CI_PIPELINE_SOURCE": "schedule"})
    assert [job["name"] for job in gitlab_jobs(repo, scheduled)] == [
        "monitor", "retrain", "deploy-winner-test"
    ]  # fmt: skip
    run = run_gitlab(repo, scheduled)
    assert_passed(run, {"monitor", "retrain", "deploy-winner-test"})
    [monitored] = (gitlab_artifacts(repo, "monitor") / "reports" / "monitoring").glob("2*.json")
    assert_a_challenger_reaches_test(store, monitored, gitlab_artifacts(repo, "retrain"),
                                     (a, version_a), (b, version_b))  # fmt: skip
    assert host_serving(lasting_host)["bento"] == a
    assert_no_servers_left(tmp_path)


def github_push(repo: Path) -> dict:
    head = git(repo, "rev-parse", "HEAD")
    return github_repository({"ref": "refs/heads/main", "before": "0" * 40, "after": head})


def github_dispatch(environment: str, action: str, bento: str = "") -> dict:
    inputs = {"environment": environment, "action": action, "bento": bento}
    return github_repository({"ref": "refs/heads/main", "inputs": inputs})


HOST_PORT = 3013
HOST_LABELS = ("self-hosted", "churn-production")


@pytest.fixture
def lasting_host():
    """A state folder for production on the "lasting host" setup; its supervisord (and the
    nginx and bento under it) is shut down at the end. Short: it holds a Unix socket."""
    assert not servers_on((HOST_PORT,)), f"port {HOST_PORT} is in use: stop that server first"
    folder = Path(tempfile.mkdtemp(prefix="host-", dir="/tmp"))
    yield folder
    stop_host(folder)
    shutil.rmtree(folder, ignore_errors=True)
    assert not servers_on((HOST_PORT,)), "the lasting host's nginx outlived its supervisord"


def move_production_to_a_host(repo: Path, state_dir: Path) -> None:
    """Commit production on target host (its own runner, supervisor, nginx on HOST_PORT),
    with the CI files rendered again by the project's own renderer."""
    file = repo / "environments" / "production.yaml"
    production = yaml.safe_load(file.read_text())
    production["deploy"] = {
        "target": "host",
        "runner": list(HOST_LABELS),
        "port": HOST_PORT,
        "url": f"http://127.0.0.1:{HOST_PORT}",
        "state_dir": str(state_dir),
    }
    file.write_text(yaml.safe_dump(production, sort_keys=False))
    project_renderer(repo).write(repo)
    assert (repo / ".github" / "workflows" / "monitor.yml").exists(), "no scheduled monitoring"
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Serve production from its own host")


def host_serving(state_dir: Path) -> dict:
    """What the host's live.json says serves, and whether its nginx answers."""
    live = json.loads((state_dir / "live.json").read_text())
    try:
        with urlopen(f"http://127.0.0.1:{HOST_PORT}/readyz", timeout=5) as response:
            live["answers"] = response.status == 200
    except OSError:
        live["answers"] = False
    return live


def bento_workers(state_dir: Path) -> dict[int, int]:
    """pid -> parent pid of every BentoML worker running from the host's venvs."""
    found = {}
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes()
            parent = int((process / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if command.startswith(str(state_dir / "venvs").encode()) and b"_bentoml_impl" in command:
            found[int(process.name)] = parent
    return found


def crash_and_wait_for_restart(state_dir: Path, colour: str) -> float:
    """Kill the serving `bentoml serve` outright; seconds until supervisor has started it
    again, its workers are the new one's (none left orphaned on the port) and nginx answers."""
    before = int(supervisorctl(state_dir, "pid", colour))
    os.kill(before, signal.SIGKILL)
    started = time.monotonic()
    while time.monotonic() - started < 180:
        now = supervisorctl(state_dir, "pid", colour)
        if now.isdigit() and int(now) not in (0, before):
            workers = bento_workers(state_dir)
            if set(workers.values()) == {int(now)} and host_serving(state_dir)["answers"]:
                return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{colour} did not come back within 180s: {bento_workers(state_dir)}")


def commit_relabelled_data(repo: Path) -> None:
    """Commit a data source of the bundled rows relabelled: the same features and class
    balance, the classes handed out in the order of a feature the old labels hardly depend
    on (a change only labels reveal; the data still passes the expectation suite). The model
    in production fails on it; one trained on it does not."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    features = frame.drop(columns=["target"])
    varied = features.loc[:, features.nunique() >= len(frame) / 2]  # ties would blur the order
    weakest = varied.corrwith(frame["target"].astype(float), method="spearman").abs().idxmin()
    order = frame[weakest].rank(method="first").to_numpy(dtype=int) - 1
    frame["target"] = np.sort(frame["target"].to_numpy())[order]
    (repo / "datasets").mkdir()
    frame.to_csv(repo / "datasets" / "relabelled.csv", index=False)
    params = repo / "params.yaml"
    text = params.read_text()
    assert "source: sklearn:breast_cancer" in text
    params.write_text(
        text.replace("source: sklearn:breast_cancer", "source: datasets/relabelled.csv")
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Data source: this quarter's labels")


def serve_labelled_traffic(repo: Path, tmp_path: Path, remote: str, rows: int = 500) -> str:
    """What production's users do between two scheduled runs, with the project's own
    commands in a checkout of its own: held-out rows of the current data sent to the host
    (`make replay`), then their labels joined to its log (`make feedback`). Returns the
    commands' output."""
    checkout = clone(repo, tmp_path / "traffic", remote)
    labels = "reports/monitoring/replay-labels.csv"
    steps = [
        ["make", "install", "data", "train"],  # the model card replay reads; a store of its own
        ["make", "replay", f"URL=http://127.0.0.1:{HOST_PORT}", f"ROWS={rows}", "SEED=7"],
        ["make", "feedback", "ENV=production", f"LABELS={labels}"],
    ]
    output = ""
    for step in steps:
        if step[1] == "feedback":  # the host's bento flushes its log twice a second
            time.sleep(5)
        done, code = execute(step, checkout, tmp_path / f"traffic-{step[1]}.log", timeout=900)
        output += done
        assert code == 0, done[-3000:]
    assert f"{rows} of {rows} labels joined by request id" in output, output[-3000:]
    return output


def assert_a_challenger_reaches_test(
    store: ReleaseStore,
    monitored: Path,
    retrained: Path,
    champion: tuple[str, str],
    in_preprod: tuple[str, str],
) -> None:
    """What a scheduled run must show once the data source carries labels the champion
    (aliased production) never learnt and production's users sent rows under them, labelled
    later: the monitor job, on production's runner, scored the labelled window and decided
    to retrain (`monitored`: its result); the challenger trained on the current data beat
    the champion by the margin, was released (`retrained`: the retrain job's dist/ and
    reports/) and reached test, recorded with why it ran. Preprod and production keep what
    they had: from test on it is promoted like any other bento."""
    decision = json.loads(monitored.read_text())["decision"]
    assert decision["retrain"] and "labelled performance" in " ".join(decision["reasons"])
    challenge = json.loads((retrained / "reports" / "challenge.json").read_text())
    assert challenge["winner"] and challenge["champion"]["version"] == champion[1], challenge
    c = built_bento(retrained)
    version_c = assert_released(store, c)
    assert c not in (champion[0], in_preprod[0]) and version_c == challenge["challenger"]["version"]
    assert deploys(store)[-1] == ("test", "deploy", c, "FINISHED")
    assert aliases(store) == {
        "test": version_c,
        "preprod": in_preprod[1],
        "production": champion[1],
    }
    why = MlflowClient(store.uri).get_model_version(PROJECT, version_c).tags
    assert why["retrain.reason"] == "drift" and why["retrain.window"] == monitored.stem, why


def a_request(store: ReleaseStore, bento: str) -> dict:
    """A one-row prediction request from the held-out rows released with `bento`."""
    [key] = [
        k for k in store.objects() if k.endswith(f"/{bento.partition(':')[2]}-smoke_rows.parquet")
    ]
    rows = pd.read_parquet(io.BytesIO(store.read(key))).drop(columns=["target"], errors="ignore")
    return {"records": rows.head(1).to_dict("records")}


@pytest.mark.usefixtures("deploy_ports_stay_free")
def test_github_promotion_across_pushes_lives_in_the_release_store(
    ci_project, tmp_path, store, lasting_host, platform_api
):
    """Successive pushes to main and Run workflow, each a separate act run that starts from
    nothing but the repository and the release store's secret. Production lives on a
    lasting host (its own runner labels): it keeps serving between runs, comes back after a
    crash, and switches bentos blue-green under load. Preprod and production deploy only
    while GitHub (its API stand-in) protects them."""
    repo = pipeline_clone(ci_project, tmp_path, GITHUB_REMOTE)
    keep_one_module_per_layer(repo)
    move_production_to_a_host(repo, lasting_host)
    artifacts = tmp_path / "artifacts"
    # GITHUB_TOKEN is what act hands jobs as github.token; the API is the stand-in's.
    secrets = {"MLFLOW_TRACKING_URI": store.uri, "GITHUB_TOKEN": platform_api.token}
    api = {"GITHUB_API_URL": platform_api.github_url}

    def act(event: str, payload: dict, run_id: str):
        return run_act(repo, event, "cd.yml", payload, artifacts, run_id, secrets, HOST_LABELS, api)

    # Push 1: bento A through test, preprod and production.
    run = act("push", github_push(repo), "1")
    assert_passed(run, workflow_jobs(repo, "cd.yml", "push"))
    a = built_bento(artifacts / "1" / "release-build")
    assert deploys(store) == [(env, verb, a, "FINISHED") for env, verb in PUSH_STEPS]
    version_a = assert_released(store, a)
    assert aliases(store) == dict.fromkeys(ENVIRONMENTS, version_a)
    assert platform_api.checked("github") == ["preprod", "production"]
    assert_no_servers_left(tmp_path)

    # Between runs: production still answers, A, from the host; a crash is undone.
    live = host_serving(lasting_host)
    assert live["bento"] == a and live["answers"], live
    restarted = crash_and_wait_for_restart(lasting_host, live["colour"])
    print(
        f"\nlasting host: restarted by supervisor {restarted:.1f}s after bentoml serve was killed"
    )

    # Push 2 while GitHub no longer protects preprod (changed by hand): bento B reaches
    # test; preprod's job stops before deploying, naming the sync; production never starts.
    preprod = platform_api.github.environments.pop("preprod")
    git(repo, "commit", "-q", "--allow-empty", "-m", "Retrain on the same data")
    run = act("push", github_push(repo), "2")
    assert run.returncode != 0, run.tail()
    assert run.jobs == {"build": "passed", "deploy-test": "passed", "deploy-preprod": "failed"}
    assert "preprod is semi-auto but github does not hold it" in run.output, run.tail()
    assert "make environments-sync PLATFORM=github" in run.output, run.tail()
    b = built_bento(artifacts / "2" / "release-build")
    assert b != a
    # Its lint re-checked with the mypy cache push 1's build saved (actions/cache).
    assert re.search(r"Cache restored from key: mypy-[0-9a-f]+-[0-9a-f]{40}$", run.output, re.M)
    version_b = assert_released(store, b)
    assert deploys(store)[3:] == [("test", "deploy", b, "FINISHED")]
    platform_api.github.environments["preprod"] = preprod

    # Run workflow: B, verified only in test, is refused by production; nothing recorded.
    run = act("workflow_dispatch", github_dispatch("production", "deploy", b), "3")
    assert run.jobs == {"dispatch-production": "failed"}, run.tail()
    assert f"bento {b} has not been verified in preprod" in run.output, run.tail()
    assert len(deploys(store)) == 4 and host_serving(lasting_host)["bento"] == a

    # Run workflow: B promoted to preprod, then to production, which switches blue-green
    # from A to B while clients keep sending requests; then rolled back the same way.
    assert_passed(act("workflow_dispatch", github_dispatch("preprod", "promote"), "4"),
                  {"dispatch-preprod"})  # fmt: skip
    request = a_request(store, a)
    for run_id, action, before, after in (("5", "promote", a, b), ("6", "rollback", b, a)):
        with steady_load(f"http://127.0.0.1:{HOST_PORT}/predict", request) as outcomes:
            run = act("workflow_dispatch", github_dispatch("production", action), run_id)
        print(f"lasting host, {action} ({before} -> {after}, blue-green): {dict(outcomes)}")
        assert_passed(run, {"dispatch-production"})
        assert deploys(store)[-1] == ("production", action, after, "FINISHED")
        assert set(outcomes) <= {"ok", "re-sent on a new connection"}, dict(outcomes)
        assert outcomes["ok"] > 100, dict(outcomes)
        live = host_serving(lasting_host)
        assert live["bento"] == after and live["answers"], live
    assert aliases(store) == {"test": version_b, "preprod": version_b, "production": version_a}
    assert_no_servers_left(tmp_path)

    # The schedule (monitor.yml, its own workflow): see assert_a_challenger_reaches_test.
    commit_relabelled_data(repo)
    serve_labelled_traffic(repo, tmp_path, GITHUB_REMOTE)
    run = run_act(repo, "schedule", "monitor.yml", github_repository({"schedule": "17 5 * * *"}),
                  artifacts, "7", secrets, HOST_LABELS, api)  # fmt: skip
    assert_passed(run, {"monitor", "retrain", "deploy-test"})
    [monitored] = (artifacts / "7" / "monitoring").glob("2*.json")
    assert_a_challenger_reaches_test(store, monitored, artifacts / "7" / "release-retrain",
                                     (a, version_a), (b, version_b))  # fmt: skip
    assert host_serving(lasting_host)["bento"] == a
    assert_no_servers_left(tmp_path)
