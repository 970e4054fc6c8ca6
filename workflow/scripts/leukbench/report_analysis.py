"""Report pieces for trustworthy comparisons: CIs, significance marks, repeats, leakage and the
per-model panels (curves, calibration, explanations, model cards)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from leukbench.metrics import HEADLINE
from leukbench.smk import read_tsv

# The evaluator's headline metrics are the ones bootstrap_ci gives intervals for.
CI_METRICS = HEADLINE


def model_key(path: str | Path) -> str:
    """'<variant>/<model>' of a file or folder directly inside <variant>/<model>/."""
    parts = Path(path).parts
    return f"{parts[-3]}/{parts[-2]}"


def with_ci(value: Any, low: Any, high: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = f"{value:.{digits}f}"
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return text
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def significance(comparisons: pd.DataFrame | None, names: list[str], scores: dict[str, float]):
    """Per model: its paired tests against the best model by test accuracy.

    Returns {name: (accuracy mark, cost mark)}: "best", "n.s. (p=...)" when the difference is
    not significant after Holm's correction, or "p=... *" when it is.
    """
    marks = {name: ("", "") for name in names}
    if comparisons is None or comparisons.empty or not scores:
        return marks
    best = max(scores, key=lambda n: scores[n])
    for name in names:
        if name == best:
            marks[name] = ("best", "best")
            continue
        row = comparisons[
            ((comparisons["model_a"] == name) & (comparisons["model_b"] == best))
            | ((comparisons["model_a"] == best) & (comparisons["model_b"] == name))
        ]
        if row.empty:
            continue
        r = row.iloc[0]
        marks[name] = (
            _mark(r["mcnemar_p_holm"], bool(r["significant"])),
            _mark(r["cost_p_holm"], bool(r["cost_significant"])),
        )
    return marks


def _mark(p: float, significant: bool) -> str:
    return f"p={p:.3g} *" if significant else f"n.s. (p={p:.3g})"


def repeats_summary(paths: list[str]) -> dict[str, dict[str, str]]:
    """'<variant>/<model>' -> metric -> 'mean ± sd (n)' over the repeated splits."""
    out: dict[str, dict[str, str]] = {}
    for path in paths:
        table = read_tsv(path)
        summary = table.groupby("metric")["value"].agg(["mean", "std", "count"])
        out[model_key(path)] = {
            metric: f"{row['mean']:.4f} ± {row['std']:.4f} (n={int(row['count'])})"
            for metric, row in summary.iterrows()
        }
    return out


def matrix_figure(matrix: np.ndarray, classes: list[str], cmap: str, title: str) -> plt.Figure:
    """A true-by-predicted matrix as an annotated heat map."""
    figure, axis = plt.subplots(figsize=(3.6, 3.0))
    sns.heatmap(
        matrix,
        annot=True,
        fmt=".0f",
        cmap=cmap,
        cbar=False,
        ax=axis,
        xticklabels=classes,
        yticklabels=classes,
    )
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=9)
    return figure


def cost_confusion_figure(m: dict, classes: list[str], cost: list[list[float]]) -> plt.Figure:
    matrix = np.asarray(m["splits"]["test"]["confusion_matrix"], dtype=float)
    weighted = matrix * np.asarray(cost, dtype=float)
    title = f"cost: {m['model']} on {m['variant']} (total {weighted.sum():.0f})"
    return matrix_figure(weighted, classes, "Reds", title)
