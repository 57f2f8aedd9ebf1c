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

import numpy as np
import pandas as pd
from scipy import stats

from .config import DecisionParams, DriftParams

MISSING = "(missing)"


def numeric_test(reference: np.ndarray, window: np.ndarray, params: DriftParams, alpha: float):
    """(test, statistic, p_value or None, drifted) for one numeric column; NaNs ignored."""
    reference = reference[~np.isnan(reference)]
    window = window[~np.isnan(window)]
    if len(reference) == 0 or len(window) == 0:
        return params.numeric, 0.0, None, False
    if params.numeric == "ks":
        result = stats.ks_2samp(reference, window, method="asymp")
        return "ks", float(result.statistic), float(result.pvalue), bool(result.pvalue < alpha)
    if params.numeric == "psi":
        score = psi(reference, window)
        return "psi", score, None, score >= params.psi
    spread = float(np.std(reference)) or 1.0
    score = float(stats.wasserstein_distance(reference, window)) / spread
    return "wasserstein", score, None, score >= params.wasserstein


def psi(reference: np.ndarray, window: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, window, side="right"), minlength=len(edges) + 1)
    expected = np.clip(expected / expected.sum(), 1e-4, None)
    actual = np.clip(actual / actual.sum(), 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def categorical_test(reference: pd.Series, window: pd.Series, alpha: float):
    """(test, Cramer's V, p_value, drifted) from chi-square on the two samples' counts."""
    ref = reference.astype(object).where(reference.notna(), MISSING).astype(str).value_counts()
    win = window.astype(object).where(window.notna(), MISSING).astype(str).value_counts()
    table = pd.concat([ref, win], axis=1).fillna(0).to_numpy().T
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or min(table.sum(axis=1)) == 0:
        return "chi2", 0.0, 1.0, False
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    cramers_v = math.sqrt(chi2 / (table.sum() * (min(table.shape) - 1)))
    return "chi2", float(cramers_v), float(p_value), bool(p_value < alpha)


def compare(
    reference: pd.DataFrame, window: pd.DataFrame, columns: dict[str, str], params: DriftParams
) -> dict:
    """Test each of `columns` ({name: "numeric" | "categorical"}) of `window` against
    `reference`; the window drifted when at least one column, and at least
    `min_drifted_share` of them, did."""
    alpha = params.p_value / max(len(columns), 1)
    results = []
    for name, kind in columns.items():
        if kind == "numeric":
            test, score, p_value, drifted = numeric_test(
                reference[name].to_numpy(dtype="float64"),
                window[name].to_numpy(dtype="float64"),
                params,
                alpha,
            )
        else:
            test, score, p_value, drifted = categorical_test(reference[name], window[name], alpha)
        results.append(
            {"column": name, "kind": kind, "test": test, "score": score, "p_value": p_value,
             "drifted": drifted}
        )  # fmt: skip
    drifted = [r["column"] for r in results if r["drifted"]]
    share = len(drifted) / len(results) if results else 0.0
    return {
        "drifted": bool(drifted) and share >= params.min_drifted_share,
        "drifted_columns": drifted,
        "drifted_share": share,
        "alpha_per_column": alpha,
        "columns": results,
    }


def decide(drifted: list[bool], rule: DecisionParams, performance_failed: bool = False) -> dict:
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
