"""Everything the shared evaluator reports beyond point metrics: CIs, calibration and curves."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leukbench import calibration
from leukbench.stats import bootstrap_ci

log = logging.getLogger(__name__)

FIGURES = ("reliability.png", "roc.png", "pr.png", "f1_threshold.png")


def _rows(predictions: pd.DataFrame, split: str) -> pd.DataFrame:
    return predictions[predictions["split"] == split]


def evaluate_uncertainty(
    predictions: pd.DataFrame,
    classes: list[str],
    cost: list[list[float]],
    settings: dict[str, Any],
    seed: int,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Bootstrap CIs, calibration (ECE, optional temperature scaling) and ROC / PR / F1-threshold
    curves of one model's test predictions. Curves and figures are written to `out_dir`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test = _rows(predictions, "test")
    if test.empty:
        log.warning("no test predictions: no confidence intervals, calibration or curves")
        return {}
    ci = bootstrap_ci(
        test,
        classes,
        cost,
        n_resamples=settings["bootstrap_resamples"],
        level=settings["ci_level"],
        seed=seed,
        split=None,
    )
    probs, labels = calibration.probability_matrix(test, classes)
    bins = settings["ece_bins"]
    calibrated: dict[str, Any] = {
        "ece": calibration.expected_calibration_error(probs, labels, bins),
        "nll": calibration.negative_log_likelihood(probs, labels),
        "bins": bins,
    }
    val = _rows(predictions, "val")
    if settings["temperature_scaling"] and len(val):
        val_probs, val_labels = calibration.probability_matrix(val, classes)
        result = calibration.temperature_scaling(val_probs, val_labels, probs, labels, bins)
        calibrated["temperature"] = asdict(result)
    reliability = calibration.reliability_table(probs, labels, bins)
    reliability.to_csv(out / "reliability.tsv", sep="\t", index=False)
    calibration.reliability_diagram(probs, labels, out / "reliability.png", bins)
    areas: dict[str, dict[str, float]] = {}
    for name, curves_of, plot in (
        ("roc", calibration.roc_curves, calibration.plot_roc),
        ("pr", calibration.pr_curves, calibration.plot_pr),
    ):
        curves, area = curves_of(probs, labels, classes)
        curves.to_csv(out / f"{name}.tsv", sep="\t", index=False)
        plot(curves, area, out / f"{name}.png")
        areas[name] = {str(r["class"]): _float(r.iloc[1]) for _, r in area.iterrows()}
    curves, best = calibration.f1_threshold_curves(probs, labels, classes)
    curves.to_csv(out / "f1_threshold.tsv", sep="\t", index=False)
    calibration.plot_f1_threshold(curves, best, out / "f1_threshold.png")
    return {
        "ci": ci.to_dict("records"),
        "ci_level": settings["ci_level"],
        "bootstrap_resamples": settings["bootstrap_resamples"],
        "calibration": calibrated,
        "auc": areas,
        "best_f1_threshold": best.to_dict("records"),
    }


def _float(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def cost_weighted_confusion(confusion: list[list[int]], cost: list[list[float]]) -> np.ndarray:
    """Cost paid in each cell: count x C[true, predicted]."""
    return np.asarray(confusion, dtype=float) * np.asarray(cost, dtype=float)
