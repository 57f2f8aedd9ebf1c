"""Stage `predict`: score a CSV/Parquet batch with the packaged model, after validating it.

The batch is checked first with the committed expectation suite, narrowed to the model's
feature columns (`feature_suite` says why); a batch that fails is refused with the same
report as `make validate`, and nothing is written. Predictions come from the model inside
the bento `make package` built last: the booster the service serves, not models/.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import validation
from .config import Params, Paths
from .data import clean_column_name
from .model import Model, classified
from .model_card import FeatureSpec
from .tables import file_format

# Output columns added to the batch: the label (or value) and one probability per class.
PREDICTION = "prediction"
PROBABILITY = "probability_"  # + the class label, cleaned like a column name
# Expectation arguments that name the columns an expectation reads.
COLUMN_ARGUMENTS = ("column", "column_A", "column_B")
COLUMN_SET = "expect_table_columns_to_match_set"
COLUMN_LISTS = {COLUMN_SET, "expect_table_columns_to_match_ordered_list"}


class BatchRefused(RuntimeError):
    """The batch failed the expectation suite; `outcome` is the validation result."""

    def __init__(self, outcome: dict[str, Any], report: Path, output: Path) -> None:
        self.outcome = outcome
        self.report = report
        # format_failures: a heading, then one line per failed expectation naming its column.
        failures = validation.format_failures(outcome).splitlines()[1:]
        super().__init__(
            "\n".join(
                [
                    f"batch refused by the expectation suite; nothing written to {output}",
                    *failures,
                    f"report: {report}; Data Docs: {outcome['docs_index']}",
                ]
            )
        )


def feature_suite(suite: dict[str, Any], spec: FeatureSpec) -> dict[str, Any]:
    """The suite as it applies to a batch to score: only the model's feature columns.

    The committed suite describes the training extract. A batch to score has no target
    (so every expectation on the target would fail it), may carry ID columns with values
    never seen before, and may be any size. So: keep the expectations whose columns are all
    features; turn the exact column-set check into "every feature is present" (extra
    columns pass through); drop other table-level checks (row count, column count), which
    describe the training extract, not a batch.
    """
    features = set(spec.names)
    kept = []
    for entry in suite.get("expectations", []):
        kwargs = entry.get("kwargs", {})
        columns = [kwargs[key] for key in COLUMN_ARGUMENTS if key in kwargs]
        columns += list(kwargs.get("column_list") or [])
        if columns:
            if set(columns) <= features:
                kept.append(entry)
        elif entry["type"] in COLUMN_LISTS:
            kept.append(
                {
                    "type": COLUMN_SET,
                    "kwargs": {"column_set": sorted(features), "exact_match": False},
                    "notes": "every feature the model uses is present; other columns pass through",
                }
            )
    meta = {**(suite.get("meta") or {}), "narrowed_to": "the model's feature columns"}
    return {**suite, "meta": meta, "expectations": kept}


def packaged_model(paths: Paths, bento_tag: str | None = None) -> tuple[Model, dict[str, Any]]:
    """The model inside a bento (default: the one `make package` built last) and its tags."""
    import bentoml
    from bentoml.exceptions import NotFound

    from .package import latest_bento

    tag = bento_tag or latest_bento(paths)
    try:
        bento = bentoml.get(tag)
    except NotFound:
        raise FileNotFoundError(
            f"bento {tag} is not in the BentoML store {paths.bentoml_home}: run `make package`"
        ) from None
    models = bento.info.all_models
    if len(models) != 1:
        raise RuntimeError(f"bento {tag} holds {len(models)} models; expected exactly one")
    stored = bentoml.models.get(models[0].tag)
    folder = Path(stored.path)
    model = Model.load_packaged(folder)
    return model, {
        "bento": str(bento.tag),
        "model_tag": str(stored.tag),
        "model_version": stored.info.labels.get("model_version"),
    }


def prediction_columns(raw: np.ndarray, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Booster output as columns: `prediction`, plus `probability_<class>` for classifiers.

    Vectorised on purpose: batches run to millions of rows.
    """
    if spec.task == "regression":
        return {PREDICTION: raw.astype("float64", copy=False)}
    labels, probabilities = classified(raw, spec, label_type=None)
    columns = {PREDICTION: labels}
    for index, label in enumerate(spec.class_labels):
        columns[clean_column_name(f"{PROBABILITY}{label}")] = probabilities[:, index]
    return columns


def predict_frame(model: Model, frame: pd.DataFrame) -> pd.DataFrame:
    """Every non-feature column of `frame` (IDs, a label if present), in row order, plus
    the prediction columns."""
    names = model.spec.names
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(f"the batch lacks feature columns {missing}")
    feature_names = set(names)
    passthrough = [column for column in frame.columns if column not in feature_names]
    columns = prediction_columns(model.raw(frame), model.spec)
    clashes = [column for column in columns if column in passthrough]
    if clashes:
        raise ValueError(f"the batch has columns {clashes}, the names of the prediction columns")
    result = frame[passthrough].reset_index(drop=True)
    return result.assign(**columns)


def write_atomically(frame: pd.DataFrame, output: Path, kind: str) -> None:
    """Write to a temporary file beside `output`, then rename: never a partial OUTPUT."""
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(handle)
    partial = Path(name)
    try:
        if kind == "csv":
            frame.to_csv(partial, index=False)
        else:
            frame.to_parquet(partial, index=False)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def validate_batch(
    paths: Paths, frame: pd.DataFrame, spec: FeatureSpec, source: Path, output: Path
) -> dict[str, Any]:
    """The feature suite on `frame`; report in reports/predict/validation/. Refuses a bad batch."""
    report_dir = paths.predict_reports / "validation"
    suite = feature_suite(validation.load_suite(paths), spec)
    outcome = validation.check_frame(
        suite, frame, report_dir, str(source), f"{paths.suite} (feature columns)"
    )
    if not outcome["success"]:
        raise BatchRefused(outcome, report_dir / "result.json", output)
    return outcome


def predict_file(
    params: Params, paths: Paths, source: Path, output: Path, bento_tag: str | None = None
) -> dict[str, Any]:
    """Validate `source`, score it with the packaged model, write `output`; return a record."""
    started = time.perf_counter()
    if not source.exists():
        raise FileNotFoundError(f"INPUT: {source} does not exist")
    file_format(source, "INPUT")
    kind = file_format(output, "OUTPUT")
    model, tags = packaged_model(paths, bento_tag)
    frame = validation.read_data_file(source, params, option="INPUT")
    outcome = validate_batch(paths, frame, model.spec, source, output)
    result = predict_frame(model, frame)
    write_atomically(result, output, kind)
    record = {
        **tags,
        "input": str(source),
        "output": str(output),
        "rows": len(result),
        "columns": list(result.columns),
        "expectations_met": outcome["statistics"]["successful_expectations"],
        "seconds": round(time.perf_counter() - started, 3),
    }
    paths.predict_reports.mkdir(parents=True, exist_ok=True)
    (paths.predict_reports / "prediction.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
