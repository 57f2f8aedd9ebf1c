"""Stage `train`: fit LightGBM (seeded), log the run to MLflow, register a model version."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature

from . import data, features, registry
from .config import PROJECT, Params, Paths
from .evaluate import compute_metrics
from .model import outputs_from_raw
from .model_card import FeatureSpec

OBJECTIVES = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
# Fixed so every run gives the same trees on the same data and params.
FIXED = {"deterministic": True, "force_col_wise": True, "verbose": -1}
# A uniform sample this large tests drift as well as all rows would, and stays cheap to fetch.
REFERENCE_ROWS = 100_000
# Written out rather than inferred: inference imports the model in a subprocess (slow).
PIP_REQUIREMENTS = [f"{name}=={version(name)}" for name in ("lightgbm", "numpy", "pandas")]


def estimator(params: Params) -> lgb.LGBMModel:
    """An unfitted LightGBM estimator for the task, with params.yaml's settings and seed."""
    # params.yaml's model settings: LightGBM's keyword arguments, each of its own type.
    settings: dict[str, Any] = {**params.model, **FIXED, "random_state": params.seed}
    settings["objective"] = OBJECTIVES[params.task]
    if params.task == "regression":
        return lgb.LGBMRegressor(**settings)
    return lgb.LGBMClassifier(**settings)


def fit(params: Params, train_df: pd.DataFrame, spec: FeatureSpec) -> lgb.LGBMModel:
    """Fit on the training split; deterministic for the same data, params and seed."""
    model = estimator(params)
    model.fit(features.to_features(train_df, spec), features.encode_target(train_df, spec))
    return model


def logged_params(params: Params, fingerprint: str) -> dict[str, object]:
    """Everything the run depends on, as MLflow params."""
    return {
        **params.model,
        "seed": params.seed,
        "task": params.task,
        "data_source": params.data.source,
        "test_size": params.data.test_size,
        "data_sha256": fingerprint,
    }


def monitoring_reference(
    train_df: pd.DataFrame, spec: FeatureSpec, raw: np.ndarray, seed: int
) -> pd.DataFrame:
    """What `make monitor` compares served data with: the training rows (features and
    target) and the model's predictions on them, at most REFERENCE_ROWS of them."""
    frame = train_df[[*spec.names, spec.target]].copy()
    frame["prediction"] = outputs_from_raw(raw, spec)["predictions"]
    if len(frame) > REFERENCE_ROWS:
        frame = frame.sample(REFERENCE_ROWS, random_state=seed)
    return frame.reset_index(drop=True)


def train(params: Params, paths: Paths, tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train, save models/model.txt and the model card, log and register in MLflow.

    `tags` go on the run and on the version it registers (`make retrain` says why it ran).
    """
    frame = data.load_raw(paths)
    if missing := int(frame[params.data.target].isna().sum()):
        raise ValueError(
            f"column {params.data.target!r} has {missing} rows without a label: set "
            "data.unlabelled: drop in params.yaml to drop them at `make data`"
        )
    fingerprint = data.load_fingerprint(paths)["sha256"]
    train_df, _ = features.split(frame, params)
    spec = features.derive_spec(frame, params)
    model = fit(params, train_df, spec)
    booster = model.booster_

    x_train = features.to_features(train_df, spec)
    raw = np.asarray(booster.predict(x_train))

    train_metrics = compute_metrics(spec, features.encode_target(train_df, spec), raw)

    paths.models.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(paths.model_file))

    experiment_id = registry.setup_experiment(paths)
    commit = registry.git_commit(paths)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(logged_params(params, fingerprint))
        mlflow.set_tags(
            {"data_sha256": fingerprint, "git_commit": commit, "task": params.task, **(tags or {})}
        )
        mlflow.log_metrics({f"train_{name}": value for name, value in train_metrics.items()})
        # Lets a later evaluation rebuild this model's inputs when it is the production model.
        mlflow.log_dict(spec.model_dump(), registry.SPEC_ARTIFACT)
        reference = monitoring_reference(train_df, spec, raw, params.seed)
        with tempfile.TemporaryDirectory() as folder:
            file = f"{folder}/{registry.REFERENCE_ARTIFACT.rsplit('/', 1)[-1]}"
            reference.to_parquet(file, index=False)
            mlflow.log_artifact(file, artifact_path=registry.REFERENCE_ARTIFACT.rsplit("/", 1)[0])
        # The booster (not the sklearn wrapper) is logged: a plain-text model, as in models/.
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(x_train, raw),
            input_example=x_train.head(5),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=PROJECT,
        )
    client = registry.client(paths)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(PROJECT, str(info.registered_model_version), key, value)

    card = {
        "spec": spec.model_dump(),
        "run_id": run.info.run_id,
        "experiment_id": experiment_id,
        "model_name": PROJECT,
        "model_version": str(info.registered_model_version),
        "model_uri": info.model_uri,
        "data_sha256": fingerprint,
        "git_commit": commit,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": params.model_dump(mode="json"),
        "train_metrics": train_metrics,
        # The service's prediction histogram buckets (regression): training predictions' deciles.
        "prediction_deciles": (
            np.quantile(raw, np.linspace(0.1, 0.9, 9)).tolist()
            if spec.task == "regression"
            else None
        ),
    }
    paths.model_card.write_text(json.dumps(card, indent=2) + "\n")
    return card
