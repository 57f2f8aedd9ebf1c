"""Small MLflow helpers shared by training, evaluation and deployment."""

from __future__ import annotations

import os
import subprocess

import lightgbm as lgb
import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .config import PROJECT, Paths
from .model_card import FeatureSpec

PRODUCTION = "production"
# Each training run logs its FeatureSpec here, so any registered version can be rescored.
SPEC_ARTIFACT = "feature_spec.json"
# ... and its training rows with the model's predictions: the reference `make monitor` uses.
REFERENCE_ARTIFACT = "monitoring/reference.parquet"


def is_server(uri: str) -> bool:
    """Whether `uri` is a tracking server that outlives this job (not a file here)."""
    return uri.startswith(("http://", "https://", "databricks"))


def client(paths: Paths) -> MlflowClient:
    """A client on the project's store ($MLFLOW_TRACKING_URI wins, as everywhere)."""
    return MlflowClient(tracking_uri=paths.mlflow_uri, registry_uri=paths.mlflow_uri)


def configure(paths: Paths) -> None:
    """Point MLflow's fluent API (tracking and registry) at the project store."""
    # Download progress bars would clutter the stage output and CI logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(paths.mlflow_uri)
    mlflow.set_registry_uri(paths.mlflow_uri)


def setup_experiment(paths: Paths, name: str = PROJECT) -> str:
    """Configure MLflow; create the experiment with its artifacts under mlruns/.

    Returns the experiment id, which runs take explicitly: a global active experiment would
    leak into the next store the process uses. The artifact location is fixed at creation
    so runs never scatter artifacts into whatever folder the command ran from.
    """
    configure(paths)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if is_server(paths.mlflow_uri):
        # A tracking server keeps artifacts in its own artifact store, reachable by all.
        return mlflow.create_experiment(name)
    paths.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(
        name, artifact_location=paths.mlflow_artifacts.resolve().as_uri()
    )


def git_commit(paths: Paths) -> str:
    """The commit the project is at, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths.root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def version_by_alias(paths: Paths, alias: str, name: str = PROJECT) -> ModelVersion | None:
    """The model version carrying `alias`, or None if the alias (or the model) is not set."""
    try:
        return client(paths).get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def production_version(paths: Paths, name: str = PROJECT) -> ModelVersion | None:
    """The version currently aliased `production`, if any."""
    return version_by_alias(paths, PRODUCTION, name)


def training_run(version: ModelVersion) -> str:
    """The id of the run a version was registered from (every version here has one)."""
    if version.run_id is None:
        raise ValueError(f"model version {version.version} names no training run (run_id)")
    return version.run_id


def logged_model_id(version: ModelVersion) -> str:
    """The version's logged model: its model_id, else its source, "models:/<model id>"."""
    if version.model_id:
        return version.model_id
    if version.source is None:
        raise ValueError(f"model version {version.version} names no logged model (source)")
    return version.source.removeprefix("models:/")


def load_version(paths: Paths, version: ModelVersion) -> tuple[lgb.Booster, FeatureSpec]:
    """The booster of a registered version and the feature spec its run logged."""
    store = client(paths)
    run = store.get_run(training_run(version))
    root = store.get_experiment(run.info.experiment_id).artifact_location
    model = store.get_logged_model(logged_model_id(version)).artifact_location
    booster = mlflow.lightgbm.load_model(relocated(paths, model, root))
    spec = mlflow.artifacts.load_dict(run_artifact(paths, training_run(version), SPEC_ARTIFACT))
    return booster, FeatureSpec.model_validate(spec)


def run_artifact(paths: Paths, run_id: str, artifact: str) -> str:
    """The URI of a run's artifact, as found from here (see `relocated`)."""
    store = client(paths)
    run = store.get_run(run_id)
    root = store.get_experiment(run.info.experiment_id).artifact_location
    return relocated(paths, f"{run.info.artifact_uri}/{artifact}", root)


def relocated(paths: Paths, uri: str, recorded_root: str) -> str:
    """`uri`, recorded below the experiment's artifact root, as found below this mlruns/.

    MLflow records absolute artifact paths, but the store moves: each CI job works in its
    own folder, and a release artifact is downloaded elsewhere. A remote artifact store, or
    a path that is not below the recorded root, is used as recorded.
    """
    root = recorded_root.removeprefix("file://").rstrip("/")
    path = uri.removeprefix("file://")
    if not uri.startswith("file://") or not path.startswith(root + "/"):
        return uri
    here = paths.mlflow_artifacts / path[len(root) + 1 :]
    return str(here) if here.exists() else uri
