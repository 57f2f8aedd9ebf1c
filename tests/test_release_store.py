"""The release store is real: what an MLflow client logs and registers through the tracking
server lands in PostgreSQL's tables and in the S3 bucket, and stop() leaves nothing running.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from mlflow.tracking import MlflowClient
from release_store import (
    ReleaseStore,
    alive,
    group_members,
    port_open,
    release_store,  # noqa: F401 (a fixture: pytest finds it here)
    start_release_store,
)

# About 20 s to start a store, most of it `mlflow server` importing MLflow (twice: its CLI,
# then uvicorn's worker) and creating its tables in PostgreSQL.
pytestmark = [pytest.mark.slow, pytest.mark.release_store]

MODEL = "churn-model"
PAYLOAD = b"release notes \xe2\x9c\x93\n\x00binary tail"


@pytest.fixture(scope="session", autouse=True)
def own_store(tmp_path_factory) -> Iterator[Future]:
    """A second store, for the stop test, starting in a thread while the session's store
    starts (session scope and autouse set it up first): the two starts overlap."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = pool.submit(start_release_store, tmp_path_factory.mktemp("own-store"))
        yield started
        if started.exception() is None:  # a failed start stopped its own processes
            started.result().stop()


@pytest.fixture(scope="module")
def store(release_store: ReleaseStore) -> ReleaseStore:  # noqa: F811 (the fixture above)
    """The session's store."""
    return release_store


@pytest.fixture(scope="module")
def logged(store: ReleaseStore, tmp_path_factory) -> dict:
    """One run logged and one model version registered through the tracking server only."""
    client = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    experiment_id = client.create_experiment("release-store-check")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_param(run_id, "learning_rate", "0.05")
    client.log_metric(run_id, "auc", 0.875)
    notes = tmp_path_factory.mktemp("logged") / "notes.bin"
    notes.write_bytes(PAYLOAD)
    client.log_artifact(run_id, str(notes), artifact_path="release")
    client.set_terminated(run_id)
    client.create_registered_model(MODEL)
    version = client.create_model_version(
        MODEL, source=f"{run.info.artifact_uri}/release", run_id=run_id
    )
    client.set_registered_model_alias(MODEL, "champion", version.version)
    return {
        "client": client,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "artifact_uri": run.info.artifact_uri,
        "version": version.version,
    }


def test_clients_see_only_the_proxy(logged):
    """Artifacts go through the tracking server: the client never sees S3."""
    assert logged["artifact_uri"].startswith("mlflow-artifacts:/")


def test_postgres_holds_the_run(store, logged):
    """The experiment, run, param and metric are rows in PostgreSQL."""
    run_id = logged["run_id"]
    assert store.query(
        "select name from experiments where experiment_id = %s", (int(logged["experiment_id"]),)
    ) == [("release-store-check",)]
    assert store.query("select status, artifact_uri from runs where run_uuid = %s", (run_id,)) == [
        ("FINISHED", logged["artifact_uri"])
    ]
    assert store.query("select key, value from params where run_uuid = %s", (run_id,)) == [
        ("learning_rate", "0.05")
    ]
    assert store.query("select key, value from metrics where run_uuid = %s", (run_id,)) == [
        ("auc", 0.875)
    ]


def test_postgres_holds_the_alias(store, logged):
    """The registered model, its version and alias are rows in PostgreSQL."""
    assert store.query(
        "select alias, version from registered_model_aliases where name = %s", (MODEL,)
    ) == [("champion", int(logged["version"]))]
    assert store.query("select run_id from model_versions where name = %s", (MODEL,)) == [
        (logged["run_id"],)
    ]


def test_bucket_holds_the_artifact(store, logged, tmp_path):
    """The artifact is an object under the prefix, and reads back through the server."""
    # mlflow-artifacts:/<experiment>/<run>/artifacts maps to s3://<bucket>/<prefix>/<same path>.
    key = f"{store.s3_prefix}{urlsplit(logged['artifact_uri']).path}/release/notes.bin"
    assert key in store.objects()
    assert store.read(key) == PAYLOAD
    downloaded = logged["client"].download_artifacts(logged["run_id"], "release", str(tmp_path))
    assert (Path(downloaded) / "notes.bin").read_bytes() == PAYLOAD


def test_stop_leaves_nothing_running(own_store: Future):
    """After stop(), no process of the store is left and its ports are closed; stop() twice
    is fine (the fixture's teardown calls it again)."""
    own = own_store.result()
    ports = [urlsplit(url).port for url in (own.uri, own.postgres_dsn, own.s3_endpoint)]
    assert all(port_open(port) for port in ports)
    own.stop()
    assert not alive(own.pids["postgres"])
    assert not group_members(own.pids["moto"])
    assert not group_members(own.pids["mlflow"])
    assert not any(port_open(port) for port in ports)
