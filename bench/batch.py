"""Batch prediction benchmark for a baked project: `make predict`'s path against raw
`booster.predict` on the same rows, then how validation and prediction scale with rows.

Run it with the baked project's interpreter, after `make install data validate train
evaluate package` there:

    <project>/.venv/bin/python bench/batch.py --project <project>

Synthetic rows are real rows sampled with replacement, numeric features jittered by a
little noise and clipped to the range seen in the data, so they pass the expectation suite.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

JITTER = 0.01  # relative noise on numeric features


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, required=True, help="baked project folder")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--ratio-rows", type=int, default=100_000, help="rows for the ratio")
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="comma-separated row counts to scale"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_project(root: Path):
    """Import the project's package with its stores pointed at the project's own."""
    state = root / ".cruft.json"
    if not state.exists():
        sys.exit(f"error: {root} is not a baked project (no .cruft.json)")
    package = json.loads(state.read_text())["context"]["cookiecutter"]["package"]
    config = importlib.import_module(f"{package}.config")
    paths = config.Paths(root)
    config.use_project_stores(paths)  # before bentoml is imported
    modules = {name: importlib.import_module(f"{package}.{name}") for name in ("data", "predict")}
    modules["features"] = importlib.import_module(f"{package}.features")
    return config, paths, modules


def synthetic(raw: pd.DataFrame, spec, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """`rows` rows like the real ones: an ID column, then every feature the model uses."""
    picked = raw[spec.names].iloc[rng.integers(0, len(raw), rows)].reset_index(drop=True)
    for feature in spec.features:
        column = raw[feature.name]
        if feature.kind == "numeric" and pd.api.types.is_float_dtype(column):
            values = picked[feature.name].to_numpy()
            noisy = values * (1 + JITTER * rng.standard_normal(rows))
            picked[feature.name] = np.clip(noisy, column.min(), column.max())
    picked.insert(0, "row_id", np.arange(rows, dtype="int64"))
    return picked


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_seconds(actions: dict, runs: int) -> dict[str, float]:
    """Median wall time of each action over `runs` rounds, interleaved so drift hits all."""
    seconds: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(runs):
        for name, action in actions.items():
            seconds[name].append(timed(action))
    return {name: statistics.median(values) for name, values in seconds.items()}


def ratio_table(predict, features, model, frame: pd.DataFrame, runs: int) -> tuple[str, float]:
    """Rows/s of predict_frame against booster.predict on a ready matrix of the same rows."""
    prepared = features.to_features(frame, model.spec)
    # The strictest baseline: a plain float matrix when no feature is categorical.
    if all(feature.kind == "numeric" for feature in model.spec.features):
        prepared = prepared.to_numpy(dtype="float64")
    # Same rows, same booster, same answers: otherwise the comparison means nothing.
    ours = predict.predict_frame(model, frame)
    raw = model.booster.predict(prepared)
    if model.spec.task == "regression":
        np.testing.assert_array_equal(ours[predict.PREDICTION].to_numpy(), raw)
    else:
        probabilities = ours[[c for c in ours if c.startswith(predict.PROBABILITY)]].to_numpy()
        # Binary: the booster gives P(last class) alone.
        np.testing.assert_array_equal(probabilities[:, -1] if raw.ndim == 1 else probabilities, raw)
    medians = median_seconds(
        {
            "booster.predict (raw)": lambda: model.booster.predict(prepared),
            "make predict path": lambda: predict.predict_frame(model, frame),
        },
        runs,
    )
    base = medians["booster.predict (raw)"]
    lines = [f"{'':<24}{'median s':>10}{'rows/s':>14}{'ratio':>8}"]
    for name, seconds in medians.items():
        lines.append(
            f"{name:<24}{seconds:>10.4f}{len(frame) / seconds:>14,.0f}{base / seconds:>8.2f}"
        )
    return "\n".join(lines), base / medians["make predict path"]


def bench_paths(config, paths, folder: Path):
    """A scratch project root: the real suite, params and bento pointer, its own reports/."""
    root = Path(folder)
    shutil.copy(paths.params, root / "params.yaml")
    shutil.copytree(paths.expectations, root / "expectations")
    (root / "dist").mkdir()
    shutil.copy(paths.dist / "bento.json", root / "dist" / "bento.json")
    return config.Paths(root)


def scaling_row(predict, params, scratch, model, frame: pd.DataFrame, runs: int) -> str:
    """One batch size: validation, prediction, and the whole of `make predict` in process
    (read Parquet, load the packaged model, validate, predict, write Parquet)."""
    rows = len(frame)
    source, output = scratch.root / "batch.parquet", scratch.root / "predictions.parquet"
    frame.to_parquet(source, index=False)
    medians = median_seconds(
        {
            "validate": lambda: predict.validate_batch(scratch, frame, model.spec, source, output),
            "predict": lambda: predict.predict_frame(model, frame),
            "whole": lambda: predict.predict_file(params, scratch, source, output),
        },
        runs,
    )
    written = pd.read_parquet(output, columns=["row_id"])["row_id"].to_numpy()
    np.testing.assert_array_equal(written, frame["row_id"].to_numpy())  # every row, in order
    cells = [f"{rows:>10,}"]
    for name, decimals in (("validate", 2), ("predict", 3), ("whole", 2)):
        cells.append(f"{medians[name]:>11.{decimals}f}{rows / medians[name]:>12,.0f}")
    return "".join(cells)


def scaling_table(predict, params, scratch, model, sizes: list[int], make_batch, runs: int) -> str:
    """Time per batch size; medians of `runs`, one run from 1M rows up."""
    header = f"{'rows':>10}" + "".join(
        f"{name + ' s':>11}{'rows/s':>12}" for name in ("validate", "predict", "whole")
    )
    lines = [header]
    for rows in sizes:
        repeat = 1 if rows >= 1_000_000 else runs
        lines.append(scaling_row(predict, params, scratch, model, make_batch(rows), repeat))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = args.project.resolve()
    config, paths, modules = load_project(root)
    predict, features = modules["predict"], modules["features"]
    params = config.load_params(paths.params)
    model, tags = predict.packaged_model(paths)
    raw = modules["data"].load_raw(paths)
    rng = np.random.default_rng(args.seed)

    def make_batch(rows: int) -> pd.DataFrame:
        return synthetic(raw, model.spec, rows, rng)

    print(
        f"batch prediction benchmark: {root.name}, {params.task}, bento {tags['bento']}, "
        f"{len(model.spec.names)} features, {model.booster.num_trees()} trees, "
        f"{os.cpu_count()} CPUs"
    )
    table, ratio = ratio_table(predict, features, model, make_batch(args.ratio_rows), args.runs)
    print(f"\nthroughput on {args.ratio_rows:,} rows (median of {args.runs} runs):\n{table}")
    print(f"ratio make predict / raw booster: {ratio:.2f} (target >= 0.80)")
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as folder:
        scratch = bench_paths(config, paths, Path(folder))
        table = scaling_table(predict, params, scratch, model, sizes, make_batch, args.runs)
    print(f"\nscaling (median of {args.runs} runs; 1 run at 1M rows and above):\n{table}")
    print(
        "validate: the suite's feature-column expectations in GX, report and Data Docs written\n"
        "predict:  predict_frame (feature frame, booster, output columns) on the frame in memory\n"
        "whole:    predict_file Parquet to Parquet in process: read, load the packaged model,\n"
        "          validate, predict, write atomically (no interpreter start-up)"
    )


if __name__ == "__main__":
    main()
