"""A second, throwaway project store for tests that register, alias or retrain models.

The session stores (tests/conftest.py) feed the bento and artifact tests, so the
destructive model tests run against their own MLflow store and models/ folder instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import lightgbm as lgb
import mlflow
import pytest

from {{ cookiecutter.package }} import train
from {{ cookiecutter.package }}.config import Paths

SWITCHED = ("PROJECT_ROOT", "MLFLOW_TRACKING_URI")


@contextmanager
def stores_of(paths: Paths) -> Iterator[Paths]:
    """Point PROJECT_ROOT and MLflow at another project root, then restore them."""
    saved = {name: os.environ.get(name) for name in SWITCHED}
    os.environ["PROJECT_ROOT"] = str(paths.root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{paths.root / 'mlruns.db'}"
    try:
        yield paths
    finally:
        # mlflow.set_tracking_uri also writes the environment, so restore it afterwards.
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_TRACKING_URI"])
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class Isolated:
    paths: Paths
    card: dict  # of the model trained with the default params
    booster: lgb.Booster  # that model, kept in memory: later tests overwrite models/

    def active(self):
        return stores_of(self.paths)


@pytest.fixture(scope="session")
def isolated(tmp_path_factory, paths: Paths, params, evaluated) -> Isolated:
    """The default model trained again in a fresh store (the session's is built first)."""
    other = Paths(tmp_path_factory.mktemp("isolated"))
    shutil.copy(paths.params, other.params)
    shutil.copytree(paths.raw_dir, other.raw_dir)
    with stores_of(other):
        card = train.train(params, other)
    return Isolated(other, card, lgb.Booster(model_file=str(other.model_file)))
