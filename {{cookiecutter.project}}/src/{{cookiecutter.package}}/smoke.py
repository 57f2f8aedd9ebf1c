"""The smoke check: held-out rows POSTed to a served bento, its answers compared with a model
in this process (the one just trained, or the registered version the bento says it packs).
"""

from __future__ import annotations

import math
from typing import Any, cast

import httpx
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from . import data, features, registry
from .config import PROJECT, Params, Paths
from .model import PREDICTIONS, PROBABILITIES, Model


def held_out_rows(params: Params, paths: Paths) -> pd.DataFrame:
    """The test split: rows the model never saw in training."""
    return features.split(data.load_raw(paths), params)[1]


def to_records(frame: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """Feature values as JSON-ready records (missing values as null)."""
    values = frame[names].astype(object)
    # Keyed by the columns, `names`: strings.
    return cast(
        "list[dict[str, Any]]", values.where(values.notna(), None).to_dict(orient="records")
    )


class SmokeResult(BaseModel):
    """One smoke check of a served bento: what `make smoke`, the infra check and every
    deploy's checks report (a deploy record keeps it under `checks.smoke`)."""

    # An unequal answer shape is an infinite difference; json writes it as Infinity.
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    passed: bool  # answered like the in-process model (and named the expected bento)
    rows: int  # held-out rows sent
    max_abs_diff: float  # between served and in-process probabilities (or values)
    serving: str | None  # the bento tag the service names at /metadata, if it answers there
    url: str | None = None  # where it ran (stored deploy checks predate this field)


def _max_abs_diff(served: list[Any], local: list[Any]) -> float:
    a, b = np.asarray(served, dtype=float), np.asarray(local, dtype=float)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def compare(served: dict[str, list[Any]], local: dict[str, list[Any]]) -> tuple[bool, float]:
    """Same keys, equal labels, probabilities (or regression values) within 1e-9."""
    if PROBABILITIES in local:
        diff = _max_abs_diff(served.get(PROBABILITIES, []), local[PROBABILITIES])
        labels_equal = served.get(PREDICTIONS) == local[PREDICTIONS]
    else:
        diff = _max_abs_diff(served.get(PREDICTIONS, []), local[PREDICTIONS])
        labels_equal = True
    return bool(served.keys() == local.keys() and labels_equal and diff <= 1e-9), diff


def predict_over_http(
    client: httpx.Client, records: list[dict[str, Any]], batch: int
) -> dict[str, list[Any]]:
    """POST records to /predict in batches of at most `batch`; concatenate the answers."""
    served: dict[str, list[Any]] = {}
    for start in range(0, len(records), batch):
        response = client.post("/predict", json={"records": records[start : start + batch]})
        if response.status_code != 200:
            raise RuntimeError(f"/predict answered {response.status_code}: {response.text}")
        for key, values in response.json().items():
            served.setdefault(key, []).extend(values)
    return served


def served_like(
    params: Params, url: str, model: Model, rows: pd.DataFrame, bento: str | None = None
) -> SmokeResult:
    """POST `rows` to <url>/predict; pass if the answers equal `model`'s in process and,
    when `bento` is given, the service names that bento."""
    url = url.rstrip("/")
    with httpx.Client(base_url=url, timeout=60) as client:
        records = to_records(rows, model.spec.names)
        served = predict_over_http(client, records, params.serving.max_batch_size)
        metadata = client.post("/metadata", json={})
    matches, diff = compare(served, model.predict(rows))
    serving = metadata.json().get("bento_tag") if metadata.is_success else None
    passed = matches and (bento is None or serving == bento)
    return SmokeResult(passed=passed, rows=len(rows), max_abs_diff=diff, serving=serving, url=url)


def smoke(params: Params, paths: Paths, url: str) -> SmokeResult:
    """The service at `url` against the model in models/ (the one just trained)."""
    model = Model.load(paths.model_file, paths.model_card)
    return served_like(params, url, model, held_out_rows(params, paths))


def reference_model(paths: Paths, model_version: str) -> Model:
    """The registered model version, loaded in process from the MLflow registry."""
    registry.configure(paths)
    version = registry.client(paths).get_model_version(PROJECT, str(model_version))
    booster, spec = registry.load_version(paths, version)
    return Model(booster, spec)


def check(params: Params, url: str, model: Model, bento: str, rows: pd.DataFrame) -> SmokeResult:
    """POST the held-out rows; the service must answer like `model` and name `bento`."""
    return served_like(params, url, model, rows, bento)
