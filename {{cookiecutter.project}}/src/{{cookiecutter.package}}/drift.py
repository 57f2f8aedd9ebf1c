"""Drift of a window of served data against the training reference, and the retrain rule.

Pure functions of data frames and numbers: `make monitor` calls them on the prediction
log, the tests on seeded replays. SciPy's tests, per column type:
- numeric: two-sample Kolmogorov-Smirnov (p-value), or PSI on the reference's deciles, or
  the Wasserstein distance in reference standard deviations (both against a threshold);
- categorical (categorical features, a classifier's predicted class): chi-square on the
  contingency table of category counts (p-value).
P-value tests share the family-wise `p_value` over the window's columns (Bonferroni): a
window drawn from the training distribution is flagged with probability at most `p_value`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .config import DecisionParams, DriftParams

MISSING = "(missing)"


def ks_statistic(reference: np.ndarray, window: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (the figure scipy.stats.ks_2samp gives).

    Both empirical CDFs are steps; between two distinct values of the smaller sample its
    CDF is flat, so the largest gap sits at one of those values or just below it. The
    larger sample (a million served rows against a few thousand training rows) is sorted
    once and looked up only at those values, not merged with the smaller one.
    """
    small, large = (reference, window) if len(reference) <= len(window) else (window, reference)
    values, counts = np.unique(small, return_counts=True)
    large = np.sort(large)
    small_at = np.cumsum(counts) / len(small)  # F_small(v), v each distinct value
    small_below = small_at - counts / len(small)  # F_small just below v
    large_at = np.searchsorted(large, values, side="right") / len(large)
    large_below = np.searchsorted(large, values, side="left") / len(large)
    return float(
        max(np.max(np.abs(small_at - large_at)), np.max(np.abs(small_below - large_below)))
    )


def ks_tests(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, float]]:
    """(statistic, p-value) per (reference, window) pair: ks_2samp's asymptotic two-sided
    test, with one call to scipy's Kolmogorov distribution for all columns (ks_2samp per
    column spends ~1 ms in argument handling, more than the test)."""
    if not pairs:
        return []
    statistics = np.array([ks_statistic(ref, win) for ref, win in pairs])
    sizes = np.array([len(ref) * len(win) / (len(ref) + len(win)) for ref, win in pairs])
    p_values = np.clip(stats.kstwo.sf(statistics, np.round(sizes)), 0, 1)
    return list(zip(statistics.tolist(), p_values.tolist(), strict=True))


def numeric_score(
    reference: np.ndarray, window: np.ndarray, params: DriftParams
) -> tuple[float, bool]:
    """(score, drifted) of a distance test: PSI or Wasserstein against its threshold."""
    if params.numeric == "psi":
        score = psi(reference, window)
        return score, score >= params.psi
    spread = float(np.std(reference)) or 1.0
    score = float(stats.wasserstein_distance(reference, window)) / spread
    return score, score >= params.wasserstein


def psi(reference: np.ndarray, window: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1
    )
    actual = np.bincount(np.searchsorted(edges, window, side="right"), minlength=len(edges) + 1)
    expected = np.clip(expected / expected.sum(), 1e-4, None)
    actual = np.clip(actual / actual.sum(), 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def categorical_test(
    reference: pd.Series, window: pd.Series, alpha: float
) -> tuple[float, float, bool]:
    """(Cramer's V, p-value, drifted) from chi-square on the two samples' category counts."""
    ref = reference.astype(object).where(reference.notna(), MISSING).astype(str).to_numpy()
    win = window.astype(object).where(window.notna(), MISSING).astype(str).to_numpy()
    categories, codes = np.unique(np.concatenate([ref, win]), return_inverse=True)
    table = np.stack(
        [np.bincount(codes[: len(ref)], minlength=len(categories)),
         np.bincount(codes[len(ref) :], minlength=len(categories))]
    )  # fmt: skip
    if len(categories) < 2 or min(len(ref), len(win)) == 0:
        return 0.0, 1.0, False
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    cramers_v = math.sqrt(chi2 / table.sum())  # a 2-row table: min(shape) - 1 == 1
    return float(cramers_v), float(p_value), bool(p_value < alpha)


def compare(
    reference: pd.DataFrame, window: pd.DataFrame, columns: dict[str, str], params: DriftParams
) -> dict[str, Any]:
    """Test each of `columns` ({name: "numeric" | "categorical"}) of `window` against
    `reference`; the window drifted when at least one column, and at least
    `min_drifted_share` of them, did."""
    alpha = params.p_value / max(len(columns), 1)
    results: dict[str, tuple[str, float, float | None, bool]] = {}
    numeric = {}
    for name, kind in columns.items():
        if kind == "numeric":
            ref = reference[name].to_numpy(dtype="float64")
            win = window[name].to_numpy(dtype="float64")
            numeric[name] = (ref[~np.isnan(ref)], win[~np.isnan(win)])
        else:
            score, p_value, drifted = categorical_test(reference[name], window[name], alpha)
            results[name] = ("chi2", score, p_value, drifted)
    testable = {name: pair for name, pair in numeric.items() if min(map(len, pair)) > 0}
    for name in numeric.keys() - testable.keys():  # every value missing on one side
        results[name] = (params.numeric, 0.0, None, False)
    if params.numeric == "ks":
        for name, (statistic, p_value) in zip(
            testable, ks_tests(list(testable.values())), strict=True
        ):
            results[name] = ("ks", statistic, p_value, p_value < alpha)
    else:
        for name, (ref, win) in testable.items():
            score, drifted = numeric_score(ref, win, params)
            results[name] = (params.numeric, score, None, drifted)
    rows = [
        {"column": name, "kind": kind, "test": results[name][0], "score": results[name][1],
         "p_value": results[name][2], "drifted": bool(results[name][3])}
        for name, kind in columns.items()
    ]  # fmt: skip
    drifted_columns = [r["column"] for r in rows if r["drifted"]]
    share = len(drifted_columns) / len(rows) if rows else 0.0
    return {
        "drifted": bool(drifted_columns) and share >= params.min_drifted_share,
        "drifted_columns": drifted_columns,
        "drifted_share": share,
        "alpha_per_column": alpha,
        "columns": rows,
    }


def decide(
    drifted: list[bool], rule: DecisionParams, performance_failed: bool = False
) -> dict[str, Any]:
    """Retrain when the latest window drifted and at least `rule.k` of the last `rule.n`
    did (`drifted` is oldest first), or when labelled performance fell below its gate.
    A single noisy window (k > 1) never triggers it."""
    recent = drifted[-rule.n :]
    count = sum(bool(d) for d in recent)
    reasons = []
    if recent and recent[-1] and count >= rule.k:
        reasons.append(
            f"{count} of the last {len(recent)} windows drifted, the latest included "
            f"(rule: {rule.k} of {rule.n})"
        )
    if performance_failed:
        reasons.append("labelled performance fell below its gate")
    return {
        "retrain": bool(reasons),
        "reasons": reasons,
        "drifted_windows": count,
        "windows": len(recent),
        "rule": {"k": rule.k, "n": rule.n},
    }
