"""The served data: the service's prediction log as a frame, and late labels joined to it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import tables
from .prediction_log import MONITOR_NAME, column_name

KEY = ["request_id", "row"]


def log_files(folder: Path) -> list[Path]:
    """Every data file of the log, rotated ones included (data.<worker>.log[.<n>])."""
    return sorted((folder / MONITOR_NAME / "data").glob("data.*.log*"))


def read_log(folder: Path, names: Sequence[str] = ()) -> pd.DataFrame:
    """All logged rows, oldest first; features among `names` logged as "<name>_" (a meta
    column's name) renamed back."""
    files = log_files(folder)
    if not files:
        raise FileNotFoundError(
            f"no prediction log in {folder / MONITOR_NAME / 'data'}: serve the bento and send "
            "it requests first (monitoring.enabled must be true in params.yaml)"
        )
    lines = [line for file in files for line in file.read_text().splitlines() if line.strip()]
    frame = pd.DataFrame.from_records([json.loads(line) for line in lines])
    if frame.empty:
        raise ValueError(f"the prediction log in {folder} is empty")
    frame = frame.rename(columns={column_name(n): n for n in names if column_name(n) != n})
    frame["request_id"] = frame["request_id"].astype(str)
    frame["model_version"] = frame["model_version"].astype(str)
    return frame.sort_values(["timestamp", "request_id", "row"], kind="stable").reset_index(
        drop=True
    )


def window(log: pd.DataFrame, model_version: str, rows: int) -> pd.DataFrame:
    """The latest `rows` rows the given model version served."""
    served = log[log["model_version"] == str(model_version)]
    if served.empty:
        versions = sorted(log["model_version"].unique())
        raise ValueError(
            f"the prediction log has no rows served by model version {model_version} "
            f"(it has versions {', '.join(versions)}); pass --model-version"
        )
    return served.tail(rows).reset_index(drop=True)


def window_id(frame: pd.DataFrame) -> str:
    """A name for the window: the time of its last row, e.g. 20261201T101502.123Z."""
    last = pd.Timestamp(frame["timestamp"].iloc[-1]).tz_convert("UTC")
    stamp: str = last.strftime("%Y%m%dT%H%M%S.")
    return stamp + f"{last.microsecond // 1000:03d}Z"


def read_labels(path: Path, target: str) -> pd.DataFrame:
    """A labels file (.csv/.parquet): request_id, row (0 if absent) and the target."""
    labels = tables.read(path, "LABELS", csv_dtype={"request_id": str})
    missing = [column for column in ("request_id", target) if column not in labels]
    if missing:
        raise ValueError(
            f"LABELS: {path.name} lacks column(s) {missing}; it needs request_id, {target} "
            "and, for requests of several records, row"
        )
    if "row" not in labels:
        labels["row"] = 0
    labels = labels[[*KEY, target]].dropna(subset=[target])
    labels["request_id"] = labels["request_id"].astype(str)
    labels["row"] = labels["row"].astype("int64")
    return labels


def join_feedback(
    log: pd.DataFrame, labels: pd.DataFrame, store: Path, target: str
) -> dict[str, Any]:
    """Keep the labels whose (request_id, row) the log has, in `store` (a later label for
    the same row replaces an earlier one); report how many matched."""
    known = labels.merge(log[KEY].drop_duplicates(), on=KEY, how="inner")
    kept = known
    if store.exists():
        kept = pd.concat([pd.read_parquet(store), known]).drop_duplicates(KEY, keep="last")
    store.parent.mkdir(parents=True, exist_ok=True)
    kept.reset_index(drop=True).to_parquet(store, index=False)
    return {
        "labels": int(len(labels)),
        "joined": int(len(known)),
        "unmatched": int(len(labels) - len(known)),
        "stored": int(len(kept)),
        "path": str(store),
        "target": target,
    }


def with_labels(frame: pd.DataFrame, store: Path, target: str) -> pd.DataFrame:
    """`frame` with the target column from the feedback store (NaN where unlabelled)."""
    if not store.exists():
        # pandas-stubs leave out a scalar pd.NA, which assign broadcasts to every row.
        return frame.assign(**{target: pd.NA})  # type: ignore[arg-type]
    labels = pd.read_parquet(store)
    frame = frame.drop(columns=[target], errors="ignore")
    return frame.merge(labels, on=KEY, how="left")
