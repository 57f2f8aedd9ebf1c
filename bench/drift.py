"""Drift computation benchmark for a baked project: `make monitor`'s drift tests on a
million-row window against the same tests as SciPy's textbook per-column calls.

Run it with the baked project's interpreter, after `make install data train` there:

    <project>/.venv/bin/python bench/drift.py --project <project>

The reference is the training split; the window is held-out rows drawn with replacement,
every numeric feature moved by half a training standard deviation (a window that drifts).
Both sides test every feature with params.yaml's settings; the baseline is
`scipy.stats.ks_2samp` (numeric) and `scipy.stats.chi2_contingency` (categorical) per
column, the calls a first version would make. Prints medians, rows/s and the ratio.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from batch import load_project  # bench/ is on sys.path: this script's folder
from scipy import stats

SHIFT = 0.5  # training standard deviations


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, required=True, help="baked project folder")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the window")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def window_and_reference(config, paths, modules, rows: int, seed: int):
    features = modules["features"]
    params = config.load_params(paths.params)
    spec = features.FeatureSpec.model_validate(json.loads(paths.model_card.read_text())["spec"])
    train, held_out = features.split(modules["data"].load_raw(paths), params)
    window = held_out.iloc[np.random.default_rng(seed).integers(0, len(held_out), rows)]
    window = window.reset_index(drop=True)
    for feature in spec.features:
        if feature.kind == "numeric":
            window[feature.name] = window[feature.name] + SHIFT * train[feature.name].std()
    columns = {f.name: f.kind for f in spec.features}
    return params, train, window, columns


def baseline(reference: pd.DataFrame, window: pd.DataFrame, columns: dict, alpha: float) -> list:
    """One SciPy call per column: ks_2samp, or chi-square on the category counts."""
    drifted = []
    for name, kind in columns.items():
        if kind == "numeric":
            p_value = stats.ks_2samp(reference[name].dropna(), window[name].dropna()).pvalue
        else:
            counts = pd.crosstab(
                pd.concat([reference[name], window[name]]).astype(str),
                np.repeat([0, 1], [len(reference), len(window)]),
            )
            p_value = stats.chi2_contingency(counts.to_numpy())[1]
        if p_value < alpha:
            drifted.append(name)
    return drifted


def median_seconds(action, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = args.project.resolve()
    sys.path.insert(0, str(root / "src"))
    config, paths, modules = load_project(root)  # batch.py's: the package, stores pointed home
    modules["drift"] = importlib.import_module(f"{config.__package__}.drift")
    params, reference, window, columns = window_and_reference(
        config, paths, modules, args.rows, args.seed
    )
    settings = params.monitoring.drift
    alpha = settings.p_value / len(columns)
    ours = modules["drift"].compare(reference, window, columns, settings)
    theirs = baseline(reference, window, columns, alpha)
    if settings.numeric == "ks" and sorted(ours["drifted_columns"]) != sorted(theirs):
        sys.exit(f"error: the two disagree: {ours['drifted_columns']} vs {theirs}")
    timings = {
        "make monitor's drift.compare": median_seconds(
            lambda: modules["drift"].compare(reference, window, columns, settings), args.runs
        ),
        "scipy per column (baseline)": median_seconds(
            lambda: baseline(reference, window, columns, alpha), args.runs
        ),
    }
    print(
        f"drift tests ({settings.numeric}/chi2) of {len(columns)} columns, {args.rows:,}-row "
        f"window (+{SHIFT:g} std) vs {len(reference):,} training rows, median of {args.runs} runs:"
    )
    print(f"{'':<30}{'median s':>10}{'rows/s':>14}{'ratio':>8}")
    base = timings["scipy per column (baseline)"]
    for name, seconds in timings.items():
        print(f"{name:<30}{seconds:>10.3f}{args.rows / seconds:>14,.0f}{base / seconds:>8.2f}")
    print(f"drifted columns: {len(ours['drifted_columns'])} of {len(columns)} (both agree)")


if __name__ == "__main__":
    main()
