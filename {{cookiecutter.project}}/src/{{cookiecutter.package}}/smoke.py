"""The smoke check: held-out rows POSTed to a served bento, its answers compared with a model
in this process (the one just trained, or the registered version the bento says it packs).
"""

from __future__ import annotations

import math
from typing import Any, cast

import httpx
import numpy as np
import pandas as pd

from . import data, features, registry
from .config import PROJECT, Params, Paths
from .model import Model


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


def _max_abs_diff(served: list[Any], local: list[Any]) -> float:
    a, b = np.asarray(served, dtype=float), np.asarray(local, dtype=float)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def compare(served: dict[str, Any], local: dict[str, Any]) -> tuple[bool, float]:
    """Same keys, equal labels, probabilities (or regression values) within 1e-9."""
    if "probabilities" in local:
        diff = _max_abs_diff(served.get("probabilities", []), local["probabilities"])
        labels_equal = served.get("predictions") == local["predictions"]
    else:
        diff = _max_abs_diff(served.get("predictions", []), local["predictions"])
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


def served_like(params: Params, url: str, model: Model, rows: pd.DataFrame) -> dict[str, Any]:
    """POST `rows` to <url>/predict; compare the answers with `model` in process."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
        records = to_records(rows, model.spec.names)
        served = predict_over_http(client, records, params.serving.max_batch_size)
        metadata = client.post("/metadata", json={})
    matches, diff = compare(served, model.predict(rows))
    serving = metadata.json().get("bento_tag") if metadata.is_success else None
    return {"matches": matches, "rows": len(rows), "max_abs_diff": diff, "serving": serving}


def smoke(params: Params, paths: Paths, url: str) -> dict[str, Any]:
    """The service at `url` against the model in models/ (the one just trained)."""
    url = url.rstrip("/")
    model = Model.load(paths.model_file, paths.model_card)
    found = served_like(params, url, model, held_out_rows(params, paths))
    return {
        "matches": found["matches"],
        "rows": found["rows"],
        "max_abs_diff": found["max_abs_diff"],
        "bento": found["serving"] or url,
        "url": url,
    }


def reference_model(paths: Paths, model_version: str) -> Model:
    """The registered model version, loaded in process from the MLflow registry."""
    registry.configure(paths)
    version = registry.client(paths).get_model_version(PROJECT, str(model_version))
    booster, spec = registry.load_version(paths, version)
    return Model(booster, spec)


def check(params: Params, url: str, model: Model, bento: str, rows: pd.DataFrame) -> dict[str, Any]:
    """POST the held-out rows; the service must answer like `model` and name `bento`."""
    found = served_like(params, url, model, rows)
    return {
        "passed": bool(found["matches"] and found["serving"] == bento),
        "rows": found["rows"],
        "max_abs_diff": found["max_abs_diff"],
        "serving": found["serving"],
    }
