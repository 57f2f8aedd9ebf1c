"""Stage `validate`: the Great Expectations suite in expectations/ run on the data.

`profile` writes a starting suite from today's data for a human to review; `validate`
runs the committed suite and writes reports/validation/result.json plus GX Data Docs.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from . import data, tables
from .config import Params, Paths
from .suite_runner import SUITE_NAME, run_suite

RANGE_MARGIN = 0.1  # widen min/max by this share of the range: a new sample may stretch it
NULL_MARGIN = 0.05  # allow this much more missingness than today before failing
MIN_ROWS_SHARE = 0.5  # fewer than half of today's rows means something upstream broke
NUMERIC_TYPES = ["int", "float", "int8", "int16", "int32", "int64", "uint8", "uint16"]
NUMERIC_TYPES += ["uint32", "uint64", "float16", "float32", "float64"]
# GX 1.24 on pandas 3 recognises a category column only by this name, with expect_..._of_type.
CATEGORY_TYPE = "CategoricalDtypeType"


def _significant(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def _expectation(kind: str, notes: str | None = None, **kwargs: object) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "kwargs": kwargs}
    if notes:
        entry["notes"] = notes
    return entry


def _range(column: str, values: pd.Series) -> dict[str, Any]:
    low, high = float(values.min()), float(values.max())
    margin = RANGE_MARGIN * ((high - low) or abs(high) or 1.0)
    floor = low - margin if low - margin >= 0 or low < 0 else 0.0  # never negative: keep 0 as floor
    return _expectation(
        "expect_column_values_to_be_between",
        column=column,
        min_value=_significant(floor),
        max_value=_significant(high + margin),
    )


def _column_expectations(column: str, values: pd.Series, params: Params) -> list[dict[str, Any]]:
    """Existence, type, nulls, and a range or a value set for one column."""
    found = [_expectation("expect_column_to_exist", column=column)]
    if column in params.data.categorical:
        found.append(
            _expectation("expect_column_values_to_be_of_type", column=column, type_=CATEGORY_TYPE)
        )
        categories = sorted(values.dropna().astype(str).unique().tolist())
        found.append(
            _expectation("expect_column_values_to_be_in_set", column=column, value_set=categories)
        )
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        found.append(
            _expectation(
                "expect_column_values_to_be_in_type_list", column=column, type_list=NUMERIC_TYPES
            )
        )
        if column != params.data.target or params.task == "regression":  # classes: a value set
            found.append(_range(column, values))
    null_share = float(values.isna().mean())
    if null_share == 0 or column == params.data.target:  # a row without a label is never fine
        found.append(_expectation("expect_column_values_to_not_be_null", column=column))
    else:
        mostly = math.floor(max(0.0, 1 - null_share - NULL_MARGIN) * 100) / 100
        found.append(
            _expectation("expect_column_values_to_not_be_null", column=column, mostly=mostly)
        )
    return found


def _target_expectations(target: pd.Series, params: Params) -> list[dict[str, Any]]:
    """Classification: known classes, each within a band of today's share. Regression: mean."""
    column = params.data.target
    if params.task == "regression":
        mean, spread = float(target.mean()), float(target.std()) / 2
        return [
            _expectation(
                "expect_column_mean_to_be_between",
                notes=f"today's mean {mean:.4g}, give or take half a standard deviation",
                column=column,
                min_value=_significant(mean - spread),
                max_value=_significant(mean + spread),
            )
        ]
    shares = target.value_counts(normalize=True).sort_index()
    classes = [value.item() if hasattr(value, "item") else value for value in shares.index]
    found = [_expectation("expect_column_values_to_be_in_set", column=column, value_set=classes)]
    for label, share in zip(classes, map(float, shares.to_numpy()), strict=True):
        band = max(0.05, 0.25 * float(share))
        low, high = max(0.0, share - band), min(1.0, share + band)
        note = f"class {label!r} is {share:.1%} of rows today; allowed {low:.1%} to {high:.1%}"
        # Share of one class, as GX can state it: at least `low` of rows are the class ...
        found.append(
            _expectation(
                "expect_column_values_to_be_in_set",
                notes=note,
                column=column,
                value_set=[label],
                mostly=math.floor(low * 1000) / 1000,
            )
        )
        # ... and at least 1 - `high` of rows are not.
        found.append(
            _expectation(
                "expect_column_values_to_not_be_in_set",
                notes=note,
                column=column,
                value_set=[label],
                mostly=math.floor((1 - high) * 1000) / 1000,
            )
        )
    return found


def build_suite(frame: pd.DataFrame, params: Params) -> dict[str, Any]:
    """A suite (as a JSON-ready dict) describing `frame` with margins for normal variation."""
    expectations = [
        _expectation(
            "expect_table_columns_to_match_set",
            column_set=sorted(frame.columns),
            exact_match=True,
        ),
        _expectation(
            "expect_table_row_count_to_be_between",
            notes=f"{len(frame)} rows when profiled",
            min_value=math.ceil(len(frame) * MIN_ROWS_SHARE),
            max_value=None,
        ),
    ]
    for column in frame.columns:
        expectations += _column_expectations(column, frame[column], params)
    expectations += _target_expectations(frame[params.data.target], params)
    return {
        "name": SUITE_NAME,
        "meta": {
            "profiled_from": params.data.source,
            "profiled_rows": len(frame),
            "notes": "Profiled automatically from the data by `make profile`. Review every bound "
            "before committing: it encodes what good data looks like.",
        },
        "expectations": expectations,
    }


def profile(params: Params, paths: Paths, output: Path) -> Path:
    """Profile the materialised data into a starting suite at `output`."""
    suite = build_suite(data.load_raw(paths), params)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(suite, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return output


def read_data_file(path: Path, params: Params, option: str = "--data") -> pd.DataFrame:
    """A CSV/Parquet file, normalised like data.py does, but keeping whatever columns it has.

    data.normalise rejects a file missing a configured column; here the suite must see the
    file as it is so that the report names the missing column. `option` names the file in
    errors as the user gave it (`--data`, `INPUT`).
    """
    frame = tables.read(path, option)
    frame = frame.rename(
        columns={column: data.clean_column_name(column) for column in frame.columns}
    )
    for column in params.data.categorical:
        if column in frame:
            frame[column] = frame[column].astype("string").astype("category")
    return frame.reset_index(drop=True)


def load_suite(paths: Paths) -> dict[str, Any]:
    if not paths.suite.exists():
        raise FileNotFoundError(
            f"{paths.suite} is missing: run `make profile` to write a starting suite, "
            "review it, and commit it"
        )
    suite: dict[str, Any] = json.loads(paths.suite.read_text(encoding="utf-8"))
    return suite


def validate(params: Params, paths: Paths, data_file: Path | None = None) -> dict[str, Any]:
    """Run the suite, write result.json and Data Docs; bad data gives success False, no error."""
    suite = load_suite(paths)
    frame = data.load_raw(paths) if data_file is None else read_data_file(data_file, params)
    return check_frame(
        suite, frame, paths.validation_reports, str(data_file or paths.raw_data), str(paths.suite)
    )


def check_frame(
    suite: dict[str, Any], frame: pd.DataFrame, report_dir: Path, data_name: str, suite_name: str
) -> dict[str, Any]:
    """Run `suite` on `frame`; write result.json and Data Docs into `report_dir`.

    `data_name` and `suite_name` say in the report which data and which suite were checked.
    """
    docs = report_dir / "docs"
    shutil.rmtree(docs, ignore_errors=True)  # one run per site: no stale pages from older runs
    outcome = run_suite(suite, frame, docs)
    outcome["data"] = data_name
    outcome["suite"] = suite_name
    outcome["docs_index"] = str(docs / "index.html")
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "result.json").write_text(json.dumps(outcome, indent=2, default=str) + "\n")
    return outcome


def _where(check: dict[str, Any]) -> str:
    return f"column {check['column']!r}" if check.get("column") else "table"


def format_table(outcome: dict[str, Any]) -> str:
    """One row per expectation: status, column, expectation, observed."""
    rows = [("status", "column", "expectation", "observed")]
    for check in outcome["results"]:
        status = "ok" if check["success"] else "FAIL"
        rows.append(
            (status, check.get("column") or "(table)", check["expectation"], check["observed"])
        )
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(3)]
    lines = [
        "".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + row[3]
        for row in rows
    ]
    stats = outcome["statistics"]
    lines.append(
        f"{stats['successful_expectations']}/{stats['evaluated_expectations']} expectations met; "
        f"Data Docs: {outcome['docs_index']}"
    )
    return "\n".join(lines)


def format_failures(outcome: dict[str, Any]) -> str:
    """One line per failing expectation, naming the column, the expectation and what was seen."""
    lines = [
        f"{_where(check)}: {check['expectation']} failed ({check['observed']})"
        for check in outcome["results"]
        if not check["success"]
    ]
    return "\n".join(["data validation failed:", *lines]) if lines else "data validation passed"
