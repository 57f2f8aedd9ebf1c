"""Replay traffic to a served bento: held-out rows, shifted if asked, posted over HTTP.

What `make replay` sends to try the monitoring loop by hand, what `make pipeline` closes
with (a shifted window to production, then its drift report), and what the tests serve.
Each request carries its own X-Request-ID, and the rows' true labels are written as the
CSV `make feedback` joins, as a client reporting outcomes later would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from . import data, features, served_data
from .config import Params, Paths
from .model_card import FeatureSpec
from .smoke import to_records


def model_spec(paths: Paths) -> FeatureSpec:
    """The feature spec of the model `make train` produced last."""
    if not paths.model_card.exists():
        raise FileNotFoundError(f"{paths.model_card} is missing: run `make train` first")
    return FeatureSpec.model_validate(json.loads(paths.model_card.read_text())["spec"])


def shifted(
    params: Params, paths: Paths, spec: FeatureSpec, rows: int, shift: float, seed: int
) -> pd.DataFrame:
    """`rows` held-out rows drawn with replacement, every numeric feature moved by `shift`
    training standard deviations (0: traffic like the training data), with their labels."""
    train, held_out = features.split(data.load_raw(paths), params)
    rng = np.random.default_rng(seed)
    window = held_out.iloc[rng.integers(0, len(held_out), rows)].reset_index(drop=True)
    for feature in spec.features:
        if feature.kind == "numeric" and shift:
            window[feature.name] = window[feature.name] + shift * train[feature.name].std()
    return window


def send(
    url: str, window: pd.DataFrame, spec: FeatureSpec, prefix: str, batch: int = 100
) -> pd.DataFrame:
    """POST `window` to `url`/predict in batches; the labels as `make feedback` reads them:
    request_id, row (within its request) and the target."""
    records = to_records(window, spec.names)
    labels = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
        for start in range(0, len(records), batch):
            request_id = f"{prefix}-{start // batch}"
            response = client.post(
                "/predict",
                json={"records": records[start : start + batch]},
                headers={"X-Request-ID": request_id},
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"{url} answered {response.status_code} to request {request_id}: "
                    f"{response.text[:300]}"
                )
            count = min(batch, len(records) - start)
            labels.append(
                pd.DataFrame({
                    "request_id": request_id,
                    "row": range(count),
                    spec.target: window[spec.target].iloc[start : start + count].to_numpy(),
                })
            )  # fmt: skip
    return pd.concat(labels, ignore_index=True)


def replay(
    params: Params, paths: Paths, url: str, rows: int, shift: float, seed: int, labels: Path
) -> dict[str, Any]:
    """Send a (shifted) window to `url`; write its labels to `labels`."""
    spec = model_spec(paths)
    window = shifted(params, paths, spec, rows, shift, seed)
    sent = send(url, window, spec, prefix=f"replay-{seed}-{shift:g}")
    labels.parent.mkdir(parents=True, exist_ok=True)
    sent.to_csv(labels, index=False)
    return {"rows": len(window), "requests": int(sent["request_id"].nunique()), "shift": shift,
            "labels": str(labels), "last_request": str(sent["request_id"].iloc[-1])}  # fmt: skip


def wait_logged(folder: Path, request_id: str | None = None, timeout: float = 15) -> pd.DataFrame:
    """The service's prediction log once it holds `request_id` (or anything, without one):
    the server flushes it twice a second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            log = served_data.read_log(folder)
            if request_id is None or request_id in set(log["request_id"]):
                return log
        except (FileNotFoundError, ValueError):  # nothing flushed yet
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"request {request_id} did not reach the prediction log in {folder}")
        time.sleep(0.2)
