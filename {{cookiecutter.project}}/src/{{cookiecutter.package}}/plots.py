"""Evaluation plots, written as PNG files (headless: the Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from .model import class_indices  # noqa: E402
from .model_card import FeatureSpec  # noqa: E402

TOP_FEATURES = 20


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def roc_curve(y_true: np.ndarray, raw: np.ndarray, folder: Path) -> Path:
    figure, axes = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(y_true, raw, ax=axes, name="model")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set_title("ROC curve (held-out rows)")
    return _save(figure, folder / "roc_curve.png")


def confusion_matrix(
    y_true: np.ndarray, labels: np.ndarray, spec: FeatureSpec, folder: Path
) -> Path:
    figure, axes = plt.subplots(figsize=(5, 5))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        labels,
        labels=list(range(len(spec.class_labels))),
        display_labels=[str(c) for c in spec.class_labels],
        ax=axes,
        colorbar=False,
    )
    axes.set_title("Confusion matrix (held-out rows)")
    return _save(figure, folder / "confusion_matrix.png")


def residuals(y_true: np.ndarray, predicted: np.ndarray, folder: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.scatter(predicted, y_true - predicted, s=12, alpha=0.7)
    axes.axhline(0, color="grey", linestyle="--")
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual - predicted")
    axes.set_title("Residuals (held-out rows)")
    return _save(figure, folder / "residuals.png")


def feature_importance(booster: lgb.Booster, folder: Path) -> Path:
    gains = booster.feature_importance(importance_type="gain")
    names = np.asarray(booster.feature_name())
    order = np.argsort(gains)[-TOP_FEATURES:]
    figure, axes = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    axes.barh(names[order], gains[order])
    axes.set_xlabel("total gain")
    axes.set_title("Feature importance (gain)")
    return _save(figure, folder / "feature_importance.png")


def write_all(
    spec: FeatureSpec, booster: lgb.Booster, y_true: np.ndarray, raw: np.ndarray, folder: Path
) -> list[Path]:
    """The plots for the task, plus feature importance for every task."""
    folder.mkdir(parents=True, exist_ok=True)
    if spec.task == "binary":
        written = [roc_curve(y_true, raw, folder)]
        written.append(confusion_matrix(y_true, class_indices(raw, spec), spec, folder))
    elif spec.task == "multiclass":
        written = [confusion_matrix(y_true, class_indices(raw, spec), spec, folder)]
    else:
        written = [residuals(y_true, raw, folder)]
    return [*written, feature_importance(booster, folder)]
