"""The one evaluator every model goes through: accuracy, misclassification cost and F1."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

HEADLINE = (
    "accuracy",
    "total_cost",
    "average_cost",
    "cost_sensitive_accuracy",
    "cost_sensitive_accuracy_normalised",
    "f1_weighted",
    "f1_macro",
)


def cost_metrics(confusion: np.ndarray, cost: np.ndarray) -> dict[str, float]:
    """Costs of a confusion matrix N[true, predicted] under C[true, predicted].

    `cost_sensitive_accuracy` is study 003's formula, 1 - total / (sum(C) * n / k), whose
    denominator is no true maximum; the normalised variant divides by the worst cost each
    sample could incur, max_j C[y_i, j], so a classifier that is always maximally wrong scores 0.
    """
    confusion = np.asarray(confusion, dtype=float)
    cost = np.asarray(cost, dtype=float)
    n, k = confusion.sum(), confusion.shape[0]
    total = float((confusion * cost).sum())
    worst = float(confusion.sum(axis=1) @ cost.max(axis=1))
    return {
        "total_cost": total,
        "average_cost": total / n if n else float("nan"),
        "cost_sensitive_accuracy": 1.0 - total / (cost.sum() * n / k) if n else float("nan"),
        "cost_sensitive_accuracy_normalised": 1.0 - total / worst if worst else float("nan"),
    }


def classification_metrics(
    true: pd.Series, pred: pd.Series, classes: list[str], cost: np.ndarray
) -> dict[str, Any]:
    confusion = confusion_matrix(true, pred, labels=classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=classes, zero_division=0
    )
    return {
        "n": len(true),
        "accuracy": float((np.asarray(true) == np.asarray(pred)).mean()) if len(true) else np.nan,
        **cost_metrics(confusion, cost),
        "f1_weighted": float(
            f1_score(true, pred, labels=classes, average="weighted", zero_division=0)
        ),
        "f1_macro": float(f1_score(true, pred, labels=classes, average="macro", zero_division=0)),
        "per_class": {
            cls: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for cls, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion.tolist(),
    }


def evaluate(predictions: pd.DataFrame, classes: list[str], cost: list[list[float]]) -> dict:
    """Metrics for every split present in `predictions` (columns split, true, pred)."""
    cost_array = np.asarray(cost, dtype=float)
    if cost_array.shape != (len(classes), len(classes)):
        raise ValueError(  # a flat list has one dimension: shape[1] would raise IndexError
            f"cost matrix is {'x'.join(map(str, cost_array.shape))} but there are "
            f"{len(classes)} classes {classes}; it must be {len(classes)}x{len(classes)}"
        )
    return {
        split: classification_metrics(part["true"], part["pred"], classes, cost_array)
        for split, part in predictions.groupby("split", sort=False)
    }


def tidy(metrics: dict, **keys: str) -> pd.DataFrame:
    """Long table: one row per (split, metric) with the identifying `keys` as columns."""
    rows = [
        {**keys, "split": split, "metric": name, "value": values[name]}
        for split, values in metrics.items()
        if isinstance(values, dict) and "confusion_matrix" in values
        for name in ("n", *HEADLINE)
    ]
    return pd.DataFrame(rows)
