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
from .features import FeatureSpec

PRODUCTION = "production"
# Each training run logs its FeatureSpec here, so any registered version can be rescored.
SPEC_ARTIFACT = "feature_spec.json"


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
    if experiment is None:
        paths.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        experiment_id = mlflow.create_experiment(
            name, artifact_location=paths.mlflow_artifacts.resolve().as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    return experiment_id


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


def model_uri(version: ModelVersion) -> str:
    """A URI that loads exactly this version (never a moving alias)."""
    return f"models:/{version.name}/{version.version}"


def load_version(version: ModelVersion) -> tuple[lgb.Booster, FeatureSpec]:
    """The booster of a registered version and the feature spec its run logged."""
    booster = mlflow.lightgbm.load_model(model_uri(version))
    spec = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{SPEC_ARTIFACT}")
    return booster, FeatureSpec.model_validate(spec)
