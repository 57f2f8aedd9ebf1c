"""The trained model as every stage sees it: a LightGBM booster plus its feature spec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from . import single_row
from .features import to_features, to_matrix
from .model_card import CARD_FILE, MODEL_FILE, FeatureSpec

if TYPE_CHECKING:  # the serving path (`predict_rows`) runs without pandas: see service.py
    import pandas as pd

# The keys of a prediction response: labels (or values), and class probabilities.
PREDICTIONS, PROBABILITIES = "predictions", "probabilities"


@dataclass(frozen=True)
class Model:
    booster: lgb.Booster
    spec: FeatureSpec

    @classmethod
    def load(cls, model_file: Path, card_file: Path) -> Model:
        """Load models/model.txt and the spec from models/model.json."""
        card = json.loads(Path(card_file).read_text())
        return cls(
            lgb.Booster(model_file=str(model_file)), FeatureSpec.model_validate(card["spec"])
        )

    @classmethod
    def load_packaged(cls, folder: Path) -> Model:
        """The model `make package` stored in a BentoML model folder."""
        return cls.load(folder / MODEL_FILE, folder / CARD_FILE)

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Booster output: P(positive) for binary, (n, k) probabilities, or values."""
        return np.asarray(self.booster.predict(to_features(frame, self.spec)))

    def predict(self, frame: pd.DataFrame) -> dict[str, list[Any]]:
        """Labels (or values), plus class probabilities for classification."""
        return outputs_from_raw(self.raw(frame), self.spec)

    def predict_rows(self, rows: list[list[Any]]) -> dict[str, list[Any]]:
        """`predict` for rows of values in training order: the serving path, no pandas.

        One OpenMP thread: a request holds a few rows, and waking a thread team per call
        costs more than the trees (on a busy 2-core host, p99 of a one-row call went from
        ~0.5 ms to ~20 ms with the default team). A server scales with workers instead.
        """
        matrix = to_matrix(rows, self.spec)
        if len(rows) == 1 and self.one_row_predictor is not None:
            raw = self.one_row_predictor.predict(matrix)
        else:
            raw = np.asarray(self.booster.predict(matrix, num_threads=1))
        return outputs_from_raw(raw, self.spec)

    @cached_property
    def one_row_predictor(self) -> single_row.SingleRowPredictor | None:
        """The fast path for one-row requests (most served ones), built on first use."""
        return single_row.SingleRowPredictor(self.booster) if single_row.available() else None


def outputs_from_raw(raw: np.ndarray, spec: FeatureSpec) -> dict[str, list[Any]]:
    """Turn booster output into the response every consumer shares (service, batch, smoke)."""
    if spec.task == "regression":
        return {PREDICTIONS: raw.astype(float).tolist()}
    labels, probabilities = classified(raw, spec)
    return {PREDICTIONS: labels.tolist(), PROBABILITIES: probabilities.astype(float).tolist()}


def class_probabilities(raw: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A classifier's booster output as (n, k) probabilities in spec.classes' order: binary
    output is P(positive), the second class."""
    return np.column_stack([1.0 - raw, raw]) if spec.task == "binary" else raw


def class_indices(raw: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The predicted class of each row, as its index in spec.classes: the most probable, the
    first on a tie (a binary P = 0.5 is the first class). Evaluation scores these, so it
    measures the labels the service answers."""
    indices: np.ndarray = class_probabilities(raw, spec).argmax(axis=1)
    return indices


def classified(
    raw: np.ndarray, spec: FeatureSpec, label_type: type | None = object
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, (n, k) class probabilities) from a classifier's booster output. `label_type`
    is the labels' dtype (object keeps each label's own Python type; None lets numpy choose)."""
    probabilities = class_probabilities(raw, spec)
    labels = np.asarray(spec.classes, dtype=label_type)[probabilities.argmax(axis=1)]
    return labels, probabilities
