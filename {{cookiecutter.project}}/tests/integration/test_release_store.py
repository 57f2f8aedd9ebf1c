"""The release store (here the session's MLflow SQLite file; a server in CD) keeps every
bento `make package` builds, with its digest, and is the only place deploys take one from."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package }} import package, registry, release_store, smoke
from {{ cookiecutter.package }}.config import PROJECT, Paths
from {{ cookiecutter.package }}.deploy import engine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second(params, bento, job_root, tmp_path_factory) -> dict:
    """Another bento of the same model version, built in another folder (as a CI job)."""
    return package.build(params, job_root(tmp_path_factory.mktemp("job")))


def digest_key(tag: str) -> str:
    return f"bento.{tag.partition(':')[2]}.sha256"


def test_package_logs_the_archive_under_its_model_version_with_its_sha256(paths, bento):
    client = registry.client(paths)
    version = client.get_model_version(PROJECT, bento["model_version"])

    archive = Path(bento["archive"])
    assert version.tags[digest_key(bento["tag"])] == release_store.sha256(archive)
    assert bento["sha256"] == release_store.sha256(archive)
    logged = {item.path for item in client.list_artifacts(version.run_id, "bentos")}
    assert f"bentos/{archive.name}" in logged
    assert release_store.find(paths, bento["tag"]).version == version.version


def test_a_bento_built_unreleased_reaches_the_store_only_by_release(
    params, paths, bento, job_root, tmp_path_factory
):
    root = job_root(tmp_path_factory.mktemp("checks"))  # CD's build job: checks come between
    built = package.build(params, root, release=False)
    with pytest.raises(release_store.NotReleased):
        release_store.find(paths, built["tag"])
    archive = Path(built["archive"])
    original = archive.read_bytes()
    archive.write_bytes(original + b"changed after the checks")
    with pytest.raises(RuntimeError, match="is not the archive `make package` built"):
        package.publish(params, root)
    archive.write_bytes(original)

    released = package.publish(params, root)

    assert released["sha256"] == built["sha256"] == release_store.sha256(archive)
    assert str(release_store.find(paths, built["tag"]).version) == built["model_version"]


def test_a_job_without_the_bento_fetches_it_from_the_release_store(paths, second):
    import bentoml

    bentoml.bentos.delete(second["tag"])

    assert release_store.fetch(paths, second["tag"]) == second["tag"]
    assert str(bentoml.get(second["tag"]).tag) == second["tag"]
    rows = release_store.smoke_rows(paths, second["tag"])
    assert len(rows) == min(len(smoke.held_out_rows(load(paths), paths)), 1000)


def load(paths: Paths):
    from {{ cookiecutter.package }}.config import load_params

    return load_params(paths.params)


def test_a_bento_whose_archive_differs_from_its_recorded_digest_is_refused(paths, second):
    import bentoml
    from bentoml.exceptions import NotFound

    client = registry.client(paths)
    version, key = second["model_version"], digest_key(second["tag"])
    client.set_model_version_tag(PROJECT, version, key, "0" * 64)
    bentoml.bentos.delete(second["tag"])
    try:
        with pytest.raises(release_store.NotReleased, match=f"records {'0' * 64}: refusing it"):
            release_store.fetch(paths, second["tag"])
        with pytest.raises(NotFound):
            bentoml.get(second["tag"])
    finally:
        client.set_model_version_tag(PROJECT, version, key, second["sha256"])
        release_store.fetch(paths, second["tag"])


def test_a_bento_the_release_store_does_not_know_is_refused_before_anything_runs(params, paths):
    with pytest.raises(release_store.NotReleased, match="is not in the release store"):
        engine.deploy(params, paths, "test", f"{PROJECT}:neverbuilt00000")
