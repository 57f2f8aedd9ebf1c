"""Tabular files: CSV or Parquet, told apart by their suffix in any case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path, option: str) -> str:
    """'csv' or 'parquet', by suffix; anything else is the caller's mistake, said in one line.

    `option` names the file in errors as the user gave it (`INPUT`, `data.source`, ...).
    """
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"{option}: {path.name} has unknown format {path.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        ) from None


def read(path: Path, option: str, csv_dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """The table in `path` (CSV columns typed by `csv_dtype` where given)."""
    if not path.exists():
        raise FileNotFoundError(f"{option}: {path} does not exist")
    if file_format(path, option) == "csv":
        return pd.read_csv(path, dtype=csv_dtype)
    return pd.read_parquet(path)
