"""The trained model as every stage sees it: a LightGBM booster plus its feature spec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

from . import single_row
from .features import FeatureSpec, to_features, to_matrix

# The files of a packaged model, inside its BentoML model folder (package.save_model writes
# them; the service, batch scoring and the deploy checks read them).
MODEL_FILE, CARD_FILE, EVALUATION_FILE = "model.txt", "model.json", "evaluation.json"


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

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Booster output: P(positive) for binary, (n, k) probabilities, or values."""
        return booster_output(self.booster.predict(to_features(frame, self.spec)))

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
            raw = booster_output(self.booster.predict(matrix, num_threads=1))
        return outputs_from_raw(raw, self.spec)

    @cached_property
    def one_row_predictor(self) -> single_row.SingleRowPredictor | None:
        """The fast path for one-row requests (most served ones), built on first use."""
        return single_row.SingleRowPredictor(self.booster) if single_row.available() else None


def booster_output(output: Any) -> np.ndarray:
    """Booster.predict's output, typed: an ndarray for dense input (a list or sparse matrix
    only comes from pred_contrib on sparse input, which nothing here asks for)."""
    return cast(np.ndarray, output)


def outputs_from_raw(raw: np.ndarray, spec: FeatureSpec) -> dict[str, list[Any]]:
    """Turn booster output into the response every consumer shares (service, batch, smoke)."""
    if spec.task == "regression":
        return {"predictions": raw.astype(float).tolist()}
    labels, probabilities = classified(raw, spec)
    return {"predictions": labels.tolist(), "probabilities": probabilities.astype(float).tolist()}


def classified(
    raw: np.ndarray, spec: FeatureSpec, label_type: type | None = object
) -> tuple[np.ndarray, np.ndarray]:
    """A classifier's booster output as (labels, (n, k) class probabilities in spec.classes'
    order): binary output is P(positive), the second class. `label_type` is the labels'
    dtype (object keeps each label's own Python type; None lets numpy choose)."""
    probabilities = np.column_stack([1.0 - raw, raw]) if spec.task == "binary" else raw
    labels = np.asarray(spec.classes, dtype=label_type)[probabilities.argmax(axis=1)]
    return labels, probabilities
