"""Stage `data`: materialise the dataset into data/raw/ and fingerprint it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn import datasets

from . import tables
from .config import Params, Paths

BUNDLED = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "diabetes": datasets.load_diabetes,
}


def clean_column_name(name: object) -> str:
    """snake_case identifier: usable as a JSON field, a LightGBM feature and a GX column."""
    cleaned = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()
    if not cleaned:
        raise ValueError(f"column name {name!r} has no letters or digits")
    return cleaned if not cleaned[0].isdigit() else f"f_{cleaned}"


def read_source(params: Params, root: Path) -> pd.DataFrame:
    """Read the configured source: a bundled scikit-learn dataset, a CSV or a Parquet file."""
    source = params.data.source
    if source.startswith("sklearn:"):
        name = source.removeprefix("sklearn:")
        if name not in BUNDLED:
            raise ValueError(
                f"data.source: unknown bundled dataset {name!r}; use one of {sorted(BUNDLED)}"
            )
        frame = BUNDLED[name](as_frame=True).frame
    else:
        frame = tables.read((root / source).resolve(), "data.source")
    return normalise(frame, params)


def normalise(frame: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Clean column names and give categorical columns a string category dtype."""
    renamed = {column: clean_column_name(column) for column in frame.columns}
    if len(set(renamed.values())) != len(renamed):
        raise ValueError(f"columns collide after cleaning their names: {renamed}")
    frame = frame.rename(columns=renamed)
    missing = [
        c
        for c in [params.data.target, *params.data.categorical, *params.data.id_columns]
        if c not in frame
    ]
    if missing:
        raise ValueError(
            f"params.yaml names columns the data lacks: {missing}; columns are {list(frame.columns)}"
        )
    for column in params.data.categorical:
        frame[column] = frame[column].astype("string").astype("category")
    return frame.reset_index(drop=True)


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the values, column names and dtypes: same data, same hash."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def materialise(params: Params, paths: Paths) -> dict[str, Any]:
    """Write data/raw/data.parquet and its fingerprint; return the fingerprint record."""
    frame = read_source(params, paths.root)
    target = params.data.target
    unlabelled = int(frame[target].isna().sum()) if target in frame else 0
    if unlabelled and params.data.unlabelled == "drop":
        frame = frame[frame[target].notna()].reset_index(drop=True)
    paths.raw_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(paths.raw_data, index=False)
    record = {
        "source": params.data.source,
        "sha256": fingerprint(frame),
        "rows": int(len(frame)),
        "columns": list(frame.columns),
        "path": str(paths.raw_data.relative_to(paths.root)),
        "unlabelled": unlabelled,
        "unlabelled_dropped": unlabelled if params.data.unlabelled == "drop" else 0,
    }
    paths.fingerprint.write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_raw(paths: Paths) -> pd.DataFrame:
    """The materialised data; run `make data` first."""
    if not paths.raw_data.exists():
        raise FileNotFoundError(f"{paths.raw_data} is missing: run `make data` first")
    return pd.read_parquet(paths.raw_data)


def load_fingerprint(paths: Paths) -> dict[str, Any]:
    fingerprint: dict[str, Any] = json.loads(paths.fingerprint.read_text())
    return fingerprint
