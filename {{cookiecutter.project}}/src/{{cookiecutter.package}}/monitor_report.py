"""The monitoring report: PNG plots, an HTML page, a console table, a Markdown summary."""

from __future__ import annotations

import html as escape
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .model_card import FeatureSpec  # noqa: E402

COLUMNS_PER_ROW = 5
STYLE = "body { font-family: sans-serif; margin: 2em } td, th { padding: 2px 8px } " + (
    "tr.drifted { background: #f9d6d2 }"
)
DRIFTED, STEADY = "#c0392b", "#2c7fb8"


def _panel(axes: Axes, reference: pd.Series, served: pd.Series, kind: str) -> None:
    """Reference against window: overlaid densities, or category shares side by side."""
    if kind == "numeric":
        ref = reference.dropna().to_numpy(dtype="float64")
        win = served.dropna().to_numpy(dtype="float64")
        low, high = np.nanmin(np.r_[ref, win]), np.nanmax(np.r_[ref, win])
        bins = np.linspace(low, high if high > low else low + 1, 31).tolist()
        # One filled outline per sample, not a bar per bin: a window's 31 panels drew
        # ~1,800 bars, most of the report's seconds.
        for values, colour, label in ((ref, "grey", "training"), (win, STEADY, "window")):
            axes.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.5,
                      color=colour, label=label)  # fmt: skip
    else:
        training = reference.astype(str).value_counts(normalize=True).rename("training")
        in_window = served.astype(str).value_counts(normalize=True).rename("window")
        shares = pd.concat([training, in_window], axis=1).fillna(0)
        shares = shares.sort_index()
        positions = np.arange(len(shares))
        axes.bar(positions - 0.2, shares["training"], 0.4, color="grey", label="training")
        axes.bar(positions + 0.2, shares["window"], 0.4, color=STEADY, label="window")
        axes.set_xticks(positions, shares.index, rotation=45, fontsize=7)
    axes.tick_params(labelsize=7)
    axes.locator_params(axis="y", nbins=3)  # a panel is small: a few ticks read as well


def plots(
    reference: pd.DataFrame,
    frame: pd.DataFrame,
    window: pd.DataFrame,
    spec: FeatureSpec,
    result: dict[str, Any],
    folder: Path,
) -> list[str]:
    """distributions.png (every column, reference vs window) and drift_over_windows.png."""
    tests = {c["column"]: c for c in result["drift"]["columns"]}
    served = frame.assign(prediction=window["prediction"])
    rows = math.ceil(len(tests) / COLUMNS_PER_ROW)
    figure, grid = plt.subplots(
        rows, COLUMNS_PER_ROW, figsize=(3 * COLUMNS_PER_ROW, 2.4 * rows), squeeze=False
    )
    for axes, (name, test) in zip(grid.flat, tests.items(), strict=False):
        _panel(axes, reference[name], served[name], test["kind"])
        figure_title = f"{name}\n{test['test']} {test['score']:.3g}" + (
            f", p={test['p_value']:.2g}" if test["p_value"] is not None else ""
        )
        axes.set_title(figure_title, fontsize=8, color=DRIFTED if test["drifted"] else "black")
    for axes in list(grid.flat)[len(tests) :]:
        axes.axis("off")
    grid.flat[0].legend(fontsize=7)
    # Fixed margins for the grid, in inches (the figure's title, two title lines above each
    # panel, tick labels below, rotated for categories): tight_layout measured every
    # panel's text first, seconds for a wide window.
    height = 2.4 * rows
    figure.suptitle(
        f"Window {result['window']}: training (grey) vs served (blue); red = drifted",
        y=1 - 0.15 / height,
    )
    figure.subplots_adjust(
        left=0.04, right=0.99, top=1 - 1.0 / height, bottom=0.8 / height, hspace=0.8, wspace=0.3
    )
    written = [_save(figure, folder / "distributions.png", tight=False)]

    history = result["history"]
    figure, axes = plt.subplots(figsize=(max(5, 0.6 * len(history) + 2), 3.2))
    colours = [DRIFTED if w["drifted"] else STEADY for w in history]
    axes.bar(range(len(history)), [w["drifted_share"] for w in history], color=colours)
    axes.set_xticks(range(len(history)), [w["window"] for w in history], rotation=30, fontsize=7)
    axes.set_ylabel("share of columns drifted")
    axes.set_ylim(0, 1)
    axes.set_title(f"Model version {result['model_version']}: last windows (red = drifted)")
    written.append(_save(figure, folder / "drift_over_windows.png"))
    return [str(path) for path in written]


def _save(figure: Figure, path: Path, tight: bool = True) -> Path:
    if tight:
        figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def table(result: dict[str, Any]) -> str:
    """The console table: one line per column, drifted ones marked; then the decision."""
    lines = [f"{'column':<28}{'test':<13}{'score':>9}{'p-value':>11}  drifted"]
    for c in result["drift"]["columns"]:
        p_value = f"{c['p_value']:.2g}" if c["p_value"] is not None else "-"
        mark = "DRIFTED" if c["drifted"] else "no"
        lines.append(
            f"{c['column'][:27]:<28}{c['test']:<13}{c['score']:>9.3g}{p_value:>11}  {mark}"
        )
    drift_info = result["drift"]
    lines.append(
        f"window {result['window']}: {result['rows']} rows of model version "
        f"{result['model_version']} vs {result['reference_rows']} training rows; "
        + (
            f"DRIFTED: {', '.join(drift_info['drifted_columns'])}"
            if drift_info["drifted"]
            else "no drift"
        )
    )
    quality = result["quality"]
    lines.append(
        "data quality: "
        + ("expectations met" if quality["success"] else "; ".join(quality["failures"]))
    )
    lines.append(f"labelled performance: {result['performance']['verdict']}")
    decision = result["decision"]
    lines.append(
        ("RETRAIN: " + "; ".join(decision["reasons"]))
        if decision["retrain"]
        else f"no retrain ({decision['drifted_windows']} of the last {decision['windows']} "
        f"windows drifted; rule {decision['rule']['k']} of {decision['rule']['n']}, latest included)"
    )
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The CI job summary."""
    decision = result["decision"]
    lines = [
        f"### Monitoring: window {result['window']} (model version {result['model_version']})",
        "",
        f"**{'Retrain' if decision['retrain'] else 'No retrain'}**: "
        + ("; ".join(decision["reasons"]) or f"{decision['drifted_windows']} of the last "
           f"{decision['windows']} windows drifted (rule {decision['rule']['k']} of "
           f"{decision['rule']['n']})"),
        "",
        "| column | test | score | p-value | drifted |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for c in result["drift"]["columns"]:
        p_value = f"{c['p_value']:.2g}" if c["p_value"] is not None else "-"
        lines.append(
            f"| {c['column']} | {c['test']} | {c['score']:.3g} | {p_value} | "
            f"{'**yes**' if c['drifted'] else 'no'} |"
        )
    lines += [
        "",
        f"Data quality: {'expectations met' if result['quality']['success'] else 'FAILED'}. "
        f"Labelled performance: {result['performance']['verdict']}.",
    ]
    return "\n".join(lines)


def html(result: dict[str, Any], folder: Path) -> Path:
    """report.html beside the PNGs: verdict, plots, the per-column table."""
    rows = "".join(
        f"<tr class={'drifted' if c['drifted'] else 'ok'}><td>{escape.escape(c['column'])}</td>"
        f"<td>{c['test']}</td><td>{c['score']:.3g}</td>"
        f"<td>{'-' if c['p_value'] is None else format(c['p_value'], '.2g')}</td>"
        f"<td>{'yes' if c['drifted'] else 'no'}</td></tr>"
        for c in result["drift"]["columns"]
    )
    images = "".join(
        f'<p><img src="{Path(p).name}" alt="{Path(p).stem}" style="max-width:100%"></p>'
        for p in result["plots"]
    )
    verdict = escape.escape(table(result).splitlines()[-1])
    quality = result["quality"]
    quality_text = "expectations met" if quality["success"] else "; ".join(quality["failures"])
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Monitoring {result["window"]}</title>
<style>{STYLE}</style></head><body>
<h1>Window {result["window"]}: model version {result["model_version"]}</h1>
<p><b>{verdict}</b></p>
<p>{result["rows"]} served rows ({escape.escape(result["first"])} to
{escape.escape(result["last"])}) against {result["reference_rows"]} training rows.
Data quality: {escape.escape(quality_text)}.
Labelled performance: {escape.escape(result["performance"]["verdict"])}.</p>
{images}
<table><tr><th>column</th><th>test</th><th>score</th><th>p-value</th><th>drifted</th></tr>
{rows}</table></body></html>
"""
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
