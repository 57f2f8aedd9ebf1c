"""The release store: the project's MLflow tracking server (on a laptop, mlruns.db).

What it keeps about releases, beside the model versions training registers:
- each bento archive `make package` builds, logged under the run of the model version it
  packs (`bentos/<name>-<version>.bento`), with its sha256 as a model-version tag
  (`bento.<version>.sha256`) and the held-out rows its deploys are smoke-tested with;
- an alias per environment on the model version it serves, and one run per deploy attempt
  in the `<project>-deployments` experiment (see deploy/records.py).

A deploy takes its bento from here by tag and checks the digest; CI jobs start with an
empty bento store, so they always download it and never rebuild it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from . import registry
from .config import PROJECT, Paths

BENTO_FOLDER = "bentos"
SMOKE_ROWS_FILE = "smoke_rows.parquet"
# Enough rows to catch a packaging bug; a large held-out split would slow every deploy.
MAX_SMOKE_ROWS = 1000
WHAT_TO_SET = (
    "set MLFLOW_TRACKING_URI to the team's MLflow server (and MLFLOW_TRACKING_USERNAME / "
    "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN if it needs them) as protected CI "
    "variables or secrets; see docs/release-store.md"
)


# BentoML's grammar for a tag's version (bentoml/_internal/tag.py), at most 63 characters.
TAG_VERSION = re.compile(r"(?=.{1,63}$)[a-z0-9]([-._a-z0-9]*[a-z0-9])?")


class NotReleased(ValueError):
    """The release store has no record of that bento (or its digest does not match)."""


def require_server(paths: Paths) -> str:
    """The tracking server's URI; CD must never fall back to a store that dies with the job."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not registry.is_server(uri):
        found = f"it is {uri!r}, a store inside this job" if uri else "it is not set"
        raise RuntimeError(
            f"CD needs a release store, and MLFLOW_TRACKING_URI {found}: {WHAT_TO_SET}"
        )
    return uri


def sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version_key(tag: str) -> str:
    """The version part of a bento tag of this project: `churn-model:abc123` -> `abc123`.

    Checked against BentoML's tag grammar before it reaches a store query or a command.
    """
    name, _, version = tag.partition(":")
    if name != PROJECT or not TAG_VERSION.fullmatch(version):
        raise NotReleased(
            f"{tag!r} is not a bento tag of {PROJECT}: expected {PROJECT}:<version>, the "
            "version lowercase letters, digits, '.', '_' or '-' (at most 63)"
        )
    return version


def publish(
    paths: Paths, tag: str, archive: Path, model_version: str, rows: pd.DataFrame
) -> dict[str, Any]:
    """Log the bento archive and its smoke rows under the model version; tag the digest."""
    client = registry.client(paths)
    version = client.get_model_version(PROJECT, str(model_version))
    digest = sha256(archive)
    with tempfile.TemporaryDirectory(prefix="release-") as folder:
        smoke = Path(folder) / f"{_version_key(tag)}-{SMOKE_ROWS_FILE}"
        rows.head(MAX_SMOKE_ROWS).to_parquet(smoke, index=False)
        client.log_artifact(version.run_id, str(archive), BENTO_FOLDER)
        client.log_artifact(version.run_id, str(smoke), BENTO_FOLDER)
    key = f"bento.{_version_key(tag)}"
    tags = {
        f"{key}.sha256": digest,
        f"{key}.archive": f"{BENTO_FOLDER}/{archive.name}",
        f"{key}.smoke_rows": f"{BENTO_FOLDER}/{smoke.name}",
        # The latest bento of this version, for a person reading the registry.
        "bento": tag,
    }
    for name, value in tags.items():
        client.set_model_version_tag(PROJECT, str(model_version), name, value)
    return {"tag": tag, "sha256": digest, "model_version": str(model_version)}


def find(paths: Paths, tag: str) -> ModelVersion:
    """The model version a released bento packs; NotReleased if no version lists it."""
    key = f"bento.{_version_key(tag)}.sha256"
    found = registry.client(paths).search_model_versions(
        f"name = '{PROJECT}' and tags.`{key}` != ''"
    )
    if not found:
        raise NotReleased(
            f"bento {tag} is not in the release store at {paths.mlflow_uri}: "
            "only a bento built by `make package` against this store can be deployed"
        )
    return found[0]


def check_tag(tag: str) -> str:
    """`tag` if it is a well-formed bento tag of this project, else NotReleased."""
    _version_key(tag)
    return tag


def digest(paths: Paths, tag: str) -> str:
    return find(paths, tag).tags[f"bento.{_version_key(tag)}.sha256"]


def _download(paths: Paths, version: ModelVersion, artifact: str, folder: Path) -> Path:
    import mlflow

    registry.configure(paths)
    uri = registry.run_artifact(paths, registry.training_run(version), artifact)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder)))


def fetch(paths: Paths, tag: str) -> str:
    """Make sure the project's bento store holds `tag`: download it and check its digest.

    A bento already in the local store was built here (`make package` published it);
    one from elsewhere comes only from the release store, never from a CI artifact.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    version = find(paths, tag)
    try:
        bentoml.bentos.get(tag)
        return tag
    except NotFound:
        pass
    key = f"bento.{_version_key(tag)}"
    with tempfile.TemporaryDirectory(prefix="bento-fetch-") as folder:
        archive = _download(paths, version, version.tags[f"{key}.archive"], Path(folder))
        found = sha256(archive)
        if found != version.tags[f"{key}.sha256"]:
            raise NotReleased(
                f"bento {tag} from the release store has sha256 {found}, but model version "
                f"{version.version} records {version.tags[f'{key}.sha256']}: refusing it"
            )
        bentoml.import_bento(str(archive))
    return tag


def smoke_rows(paths: Paths, tag: str) -> pd.DataFrame:
    """The held-out rows published with the bento: what its deploys are checked against."""
    version = find(paths, tag)
    with tempfile.TemporaryDirectory(prefix="smoke-rows-") as folder:
        file = _download(
            paths, version, version.tags[f"bento.{_version_key(tag)}.smoke_rows"], Path(folder)
        )
        return pd.read_parquet(file)
