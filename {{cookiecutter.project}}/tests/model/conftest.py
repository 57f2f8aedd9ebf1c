"""A second, throwaway project store for tests that register, alias or retrain models.

The session stores (tests/conftest.py) feed the bento and artifact tests, so the
destructive model tests run against their own MLflow store and models/ folder instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import pytest

from {{ cookiecutter.package }} import train
from {{ cookiecutter.package }}.config import Paths


@dataclass(frozen=True)
class Isolated:
    paths: Paths
    card: dict  # of the model trained with the default params
    booster: lgb.Booster  # that model, kept in memory: later tests overwrite models/
    stores_of: Callable  # the `stores_of` fixture

    def active(self):
        return self.stores_of(self.paths)


@pytest.fixture(scope="session")
def isolated(tmp_path_factory, paths: Paths, params, evaluated, stores_of) -> Isolated:
    """The default model trained again in a fresh store (the session's is built first, or
    handed over by CI's train job). It must be trained here: reproducibility is a second
    training giving the same model, and the destructive tests need a store of their own."""
    other = Paths(tmp_path_factory.mktemp("isolated"))
    shutil.copy(paths.params, other.params)
    shutil.copytree(paths.raw_dir, other.raw_dir)
    with stores_of(other):
        card = train.train(params, other)
    return Isolated(other, card, lgb.Booster(model_file=str(other.model_file)), stores_of)
