"""`make store-migrate`: a laptop's release store copied to a real `mlflow server`.

The source is a moved copy of the session's store, given a history of its own: the
bento's model version, a later one whose predecessor was deleted (so the server numbers it
differently), deploy records (one failed) and the aliases of the deploys that served.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow.entities import LoggedModelStatus

from {{ cookiecutter.package }} import registry, release_migration, release_store, serving
from {{ cookiecutter.package }}.config import PROJECT, Paths
from {{ cookiecutter.package }}.deploy import records
from {{ cookiecutter.package }}.deploy.records import DeployRecord
from {{ cookiecutter.package }}.model import Model

pytestmark = pytest.mark.integration

MODEL = f"name = '{PROJECT}'"
CLI = (sys.executable, "-m", f"{release_migration.__package__}.cli")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """`mlflow server` on SQLite, serving its own artifacts, on a free port of 127.0.0.1."""
    home = tmp_path_factory.mktemp("server")
    port, log = serving.free_port(), home / "server.log"
    command = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", f"sqlite:///{home / 'server.db'}"),
        *("--artifacts-destination", str(home / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    # No job runner: it starts seven more processes, each importing MLflow (~15 s of CPU),
    # for MLflow's GenAI jobs, which a release store never runs.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_for_health(uri, process, log)
        yield uri
    finally:
        stop_group(process)


def wait_for_health(uri: str, process: subprocess.Popen, log: Path) -> None:
    # Generous: on an overloaded host the server's start and each answer take seconds (a
    # 2 s answer timeout and a 120 s start were both missed under a load of 8 on 2 cores).
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{uri}/health", timeout=15).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer {uri}/health: {log.read_text()[-2000:]}")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn runs as its child), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=15)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def deploy(laptop: Paths, env: str, bento: str, version: str, success: bool) -> DeployRecord:
    """A deploy record as the engine writes one, and the alias when the bento served."""
    record = DeployRecord(
        time=records.now(), environment=env, action="deploy", bento=bento,
        model_version=version, git_commit="abc123", actor="migrating-test",
    )  # fmt: skip
    record = records.start(laptop, record)
    record.checks, record.success = {"loadtest": {"rps": 42.0, "p99_ms": 12.5}}, success
    record = records.finish(laptop, record)
    if success:
        records.tag_registry(laptop, record)
    return record


@pytest.fixture(scope="module")
def laptop(paths: Paths, bento, tmp_path_factory) -> Paths:
    """A moved copy of the session's store: versions v and v+2 (v+1 deleted), 3 deploys."""
    root = tmp_path_factory.mktemp("laptop")
    shutil.copy(paths.root / "mlruns.db", root / "mlruns.db")
    shutil.copytree(paths.mlflow_artifacts, root / "mlruns")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns.db'}")
        laptop = Paths(root)
        client = registry.client(laptop)
        # Only this module's history: other modules of the session deploy and train too.
        for alias in client.get_registered_model(PROJECT).aliases:
            client.delete_registered_model_alias(PROJECT, alias)
        for version in client.search_model_versions(MODEL):
            if str(version.version) != str(bento["model_version"]):
                client.delete_model_version(PROJECT, str(version.version))
        for record in records.read(laptop):
            client.delete_run(record.run_id)
        first = client.get_model_version(PROJECT, bento["model_version"])
        for _ in range(2):
            last = client.create_model_version(
                PROJECT, first.source, first.run_id, {"note": "later"}, model_id=first.model_id
            )
        client.delete_model_version(PROJECT, str(int(last.version) - 1))
        deploy(laptop, "test", bento["tag"], first.version, success=True)
        deploy(laptop, "preprod", bento["tag"], last.version, success=False)
        deploy(laptop, "preprod", bento["tag"], last.version, success=True)
        yield laptop
    registry.configure(paths)  # MLflow's fluent API back on the session's store


@pytest.fixture(scope="module")
def migrated(paths: Paths, laptop: Paths, server: str) -> dict:
    """The migration, with the lines it printed; the store it copied from found where it
    was moved to (the session's own artifacts are out of the way meanwhile)."""
    lines: list[str] = []
    away = paths.mlflow_artifacts.rename(paths.root / "mlruns-away")
    try:
        done = release_migration.migrate(laptop, server, lines.append)
    finally:
        away.rename(paths.mlflow_artifacts)
    return {**done, "lines": lines}


@pytest.fixture
def on(monkeypatch):
    """`on(uri)`: the project's Paths with its release store (and MLflow) pointed at `uri`."""

    def point(uri: str) -> Paths:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        project = Paths(Path(os.environ["PROJECT_ROOT"]))
        registry.configure(project)
        return project

    yield point
    monkeypatch.undo()
    registry.configure(Paths(Path(os.environ["PROJECT_ROOT"])))


def metrics(logged) -> dict:
    return {metric.key: metric.value for metric in logged.metrics}


def uri_of(laptop: Paths) -> str:
    return f"sqlite:///{laptop.root / 'mlruns.db'}"


def by_number(paths: Paths) -> dict:
    return {str(v.version): v for v in registry.client(paths).search_model_versions(MODEL)}


def test_every_version_is_copied_with_its_run_and_logged_model(laptop, server, migrated, on):
    source_store, source = registry.client(on(uri_of(laptop))), by_number(on(uri_of(laptop)))
    target_store, target = registry.client(on(server)), by_number(on(server))
    first, later = sorted(source, key=int)
    assert migrated["versions"] == {first: "1", later: "2"}
    assert migrated["lines"][:2] == [f"model version {first} -> 1", f"model version {later} -> 2"]
    assert set(target) == {"1", "2"}
    for old, new in migrated["versions"].items():
        copied, original = target[new], source[old]
        remapped = {key for key in original.tags if key.endswith(".deploy_run")}
        assert {k: v for k, v in copied.tags.items() if k not in remapped} == {
            k: v for k, v in original.tags.items() if k not in remapped
        }
        logged = target_store.get_logged_model(copied.source.removeprefix("models:/"))
        was = source_store.get_logged_model(original.source.removeprefix("models:/"))
        assert (logged.source_run_id, logged.status) == (copied.run_id, LoggedModelStatus.READY)
        assert (logged.name, logged.params) == (was.name, was.params)
        assert metrics(logged) == metrics(was) != {}
        run, was = target_store.get_run(copied.run_id), source_store.get_run(original.run_id)
        assert (run.data.params, run.data.metrics) == (was.data.params, was.data.metrics)
        assert (run.info.status, run.info.start_time) == ("FINISHED", was.info.start_time)
        assert run.data.tags["git_commit"] == was.data.tags["git_commit"]
    # Both versions come from one training run and its logged model, each copied once.
    assert target["1"].run_id == target["2"].run_id
    assert target["1"].source == target["2"].source
    logged = target_store.get_logged_model(target["1"].source.removeprefix("models:/"))
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [
        {"name": PROJECT, "version": 1},
        {"name": PROJECT, "version": 2},
    ]
    artifacts = {item.path for item in target_store.list_artifacts(target["1"].run_id, "bentos")}
    assert artifacts == {
        item.path for item in source_store.list_artifacts(source[first].run_id, "bentos")
    }


def test_aliases_and_deploy_tags_name_the_copies(laptop, server, migrated, on):
    source, target = by_number(on(uri_of(laptop))), by_number(on(server))
    assert migrated["aliases"] == {"test": "1", "preprod": "2"}
    model = registry.client(on(server)).get_registered_model(PROJECT)
    assert model.aliases == {"test": "1", "preprod": "2"}
    for env, new in migrated["aliases"].items():
        old = next(k for k, v in migrated["versions"].items() if v == new)
        old_run = source[old].tags[f"deploy.{env}.deploy_run"]
        assert target[new].tags[f"deploy.{env}.deploy_run"] == migrated["deploy_records"][old_run]


def test_the_deploy_records_are_copied_oldest_first_with_versions_remapped(
    laptop, server, migrated, on
):
    before = records.read(on(uri_of(laptop)))
    after = records.read(on(server))
    assert [r.run_id for r in after] == [migrated["deploy_records"][r.run_id] for r in before]
    assert [(r.environment, r.model_version, r.status) for r in after] == [
        ("test", "1", "FINISHED"),
        ("preprod", "2", "FAILED"),
        ("preprod", "2", "FINISHED"),
    ]
    for old, new in zip(before, after, strict=True):
        same = {"run_id", "model_version"}
        assert new.model_dump(exclude=same) == old.model_dump(exclude=same)
    assert records.current(on(server), "preprod").run_id == after[-1].run_id
    run = registry.client(on(server)).get_run(after[0].run_id)
    was = registry.client(on(uri_of(laptop))).get_run(before[0].run_id)
    assert run.data.metrics == {"loadtest_rps": 42.0, "loadtest_p99_ms": 12.5}
    assert (run.info.start_time, run.info.end_time) == (was.info.start_time, was.info.end_time)


def test_the_migrated_model_loads_and_predicts_like_the_source(
    laptop, server, migrated, raw_data, on
):
    source = registry.client(on(uri_of(laptop))).get_model_version(
        PROJECT, next(iter(migrated["versions"]))
    )
    booster, spec = registry.load_version(on(uri_of(laptop)), source)
    target = registry.client(on(server)).get_model_version(PROJECT, "1")
    moved_booster, moved_spec = registry.load_version(on(server), target)
    rows = raw_data.head(50)
    assert moved_spec == spec
    np.testing.assert_allclose(
        Model(moved_booster, moved_spec).raw(rows), Model(booster, spec).raw(rows)
    )


def test_a_migrated_bento_passes_the_digest_check_of_a_fetch(server, migrated, bento, on, tmp_path):
    target = on(server)
    version = release_store.find(target, bento["tag"])
    assert str(version.version) == "1"
    key = f"bento.{bento['tag'].partition(':')[2]}"
    archive = release_store._download(target, version, version.tags[f"{key}.archive"], tmp_path)
    assert (
        release_store.sha256(archive)
        == release_store.digest(target, bento["tag"])
        == bento["sha256"]
    )
    assert len(release_store.smoke_rows(target, bento["tag"])) > 0


def test_a_second_migration_to_the_same_server_is_refused(laptop, server, migrated, on):
    on(uri_of(laptop))
    with pytest.raises(ValueError, match="already has versions of") as refused:
        release_migration.migrate(laptop, server, print)
    assert "\n" not in str(refused.value)
    assert set(by_number(on(server))) == {"1", "2"}
    assert len(records.read(on(server))) == 3


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (
            "sqlite:///elsewhere/mlruns.db",
            "error: the migration target must be an MLflow tracking server",
        ),
        (f"http://127.0.0.1:{serving.free_port()}", "failed: "),
    ],
    ids=["a file store", "a dead server"],  # the same on every xdist worker: no port in them
)
def test_the_command_ends_in_one_line_on_a_file_store_or_a_dead_server(paths, target, says):
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    done = subprocess.run(
        [*CLI, "store", "migrate", "--to", target],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert says in done.stderr
