"""Uncertainty and significance for the evaluator's metrics: bootstrap CIs, McNemar, paired costs.

Every function takes the predictions table the models write (columns id, true, pred, split and
prob_<class>) or plain label arrays, and the dataset's cost matrix C[true, predicted].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import binomtest, chi2

from leukbench.metrics import HEADLINE, classification_metrics, cost_metrics

EXACT_BELOW = 25  # discordant pairs under which McNemar's chi-square approximation is poor


# --- inputs ------------------------------------------------------------------------------------


def split_rows(predictions: pd.DataFrame, split: str | None = "test") -> pd.DataFrame:
    """The rows of `split` when the table has a split column (and `split` is given), else all."""
    if split is None or "split" not in predictions.columns:
        return predictions.reset_index(drop=True)
    rows = predictions[predictions["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"no rows with split == '{split}' in the predictions table")
    return rows


def label_codes(labels: Sequence | pd.Series | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class indices of `labels`; a label outside `classes` is an error, not a silent miss."""
    index = {cls: k for k, cls in enumerate(classes)}
    values = list(np.asarray(labels))
    unknown = sorted({str(v) for v in values if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))


def resample_indices(
    n_resamples: int, codes: np.ndarray, rng: np.random.Generator, stratify: bool
) -> np.ndarray:
    """(n_resamples, n) bootstrap row indices; stratified draws keep every class's size fixed."""
    n = len(codes)
    if not stratify:
        return rng.integers(0, n, size=(n_resamples, n))
    parts = []
    for k in np.unique(codes):
        members = np.flatnonzero(codes == k)
        parts.append(members[rng.integers(0, len(members), size=(n_resamples, len(members)))])
    return np.concatenate(parts, axis=1)


def percentile_interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring resamples where a metric is undefined."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1), got {level}")
    tail = (1.0 - level) / 2.0
    low, high = np.nanquantile(values, [tail, 1.0 - tail], axis=0)
    return low, high


# --- bootstrap confidence intervals --------------------------------------------------------------


def confusion_matrices(
    true: np.ndarray, pred: np.ndarray, indices: np.ndarray, n_classes: int
) -> np.ndarray:
    """N[b, true, predicted] for every resample b, by one bincount over all index rows."""
    cell = true * n_classes + pred
    cells = n_classes * n_classes
    offsets = np.arange(len(indices))[:, None] * cells
    counts = np.bincount((cell[indices] + offsets).ravel(), minlength=len(indices) * cells)
    return counts.reshape(len(indices), n_classes, n_classes)


def confusion_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and weighted/macro F1 of a stack of confusion matrices N[b, true, predicted].

    The same quantities classification_metrics gets from sklearn (zero_division=0, every class
    of `classes` counted in the macro mean), computed on the stack at once because 2,000 sklearn
    calls take ~30 s; tests pin the two equal.
    """
    n = confusion.sum(axis=(1, 2)).astype(float)
    tp = np.diagonal(confusion, axis1=1, axis2=2).astype(float)
    support = confusion.sum(axis=2).astype(float)
    predicted = confusion.sum(axis=1).astype(float)
    denominator = support + predicted  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    weighted = np.divide((f1 * support).sum(axis=1), n, out=np.zeros_like(n), where=n > 0)
    return {
        "accuracy": np.divide(tp.sum(axis=1), n, out=np.full_like(n, np.nan), where=n > 0),
        "f1_weighted": weighted,
        "f1_macro": f1.mean(axis=1),
    }


def resample_metrics(confusion: np.ndarray, cost: np.ndarray) -> pd.DataFrame:
    """Every headline metric for every resample: one row per resample, one column per metric."""
    costs = pd.DataFrame([cost_metrics(matrix, cost) for matrix in confusion])
    scores = pd.DataFrame(confusion_scores(confusion))
    return pd.concat([scores, costs], axis=1)[list(HEADLINE)]


def bootstrap_ci(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    cost_matrix: Sequence[Sequence[float]] | np.ndarray,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    stratify: bool = False,
    split: str | None = "test",
) -> pd.DataFrame:
    """Percentile bootstrap CIs for every headline metric of the evaluator on one split.

    `predictions` has columns true and pred (and split, filtered to `split` when present).
    Returns columns metric, value, ci_low, ci_high, where value is the evaluator's own
    (classification_metrics) point estimate on the unresampled rows. With `stratify` each
    resample draws every true class separately, keeping the class sizes of the test set.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    rows = split_rows(predictions, split)
    classes = list(classes)
    cost = np.asarray(cost_matrix, dtype=float)
    point = classification_metrics(rows["true"], rows["pred"], classes, cost)
    true, pred = label_codes(rows["true"], classes), label_codes(rows["pred"], classes)
    indices = resample_indices(n_resamples, true, np.random.default_rng(seed), stratify)
    resampled = resample_metrics(confusion_matrices(true, pred, indices, len(classes)), cost)
    low, high = percentile_interval(resampled.to_numpy(), level)
    return pd.DataFrame(
        {
            "metric": list(HEADLINE),
            "value": [float(point[m]) for m in HEADLINE],
            "ci_low": low,
            "ci_high": high,
        }
    )


# --- McNemar -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemarResult:
    """b: A right and B wrong; c: A wrong and B right."""

    b: int
    c: int
    statistic: float
    p_value: float
    method: str


def mcnemar_test(y_true: Sequence, pred_a: Sequence, pred_b: Sequence) -> McNemarResult:
    """McNemar's test of equal error rates of two classifiers on the same images.

    Exact two-sided binomial test of b against Binomial(b + c, 1/2) when b + c < 25 (statistic
    min(b, c)); otherwise the chi-square test with continuity correction,
    (|b - c| - 1)^2 / (b + c) on one degree of freedom. No discordant pair gives p = 1.
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not len(y_true) == len(pred_a) == len(pred_b):
        raise ValueError("y_true, pred_a and pred_b must have the same length")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    if b + c < EXACT_BELOW:
        p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
        return McNemarResult(b, c, float(min(b, c)), float(p), "exact")
    statistic = (abs(b - c) - 1.0) ** 2 / (b + c)
    return McNemarResult(b, c, float(statistic), float(chi2.sf(statistic, 1)), "chi2_corrected")


# --- paired bootstrap of cost ------------------------------------------------------------------


@dataclass(frozen=True)
class CostDifference:
    """Cost of model A minus cost of model B on the same images (negative: A is cheaper)."""

    n: int
    average_difference: float
    total_difference: float
    bootstrap_mean: float
    ci_low: float
    ci_high: float
    total_ci_low: float
    total_ci_high: float
    p_value: float
    n_resamples: int


def paired_bootstrap_cost_difference(
    y_true: Sequence,
    pred_a: Sequence,
    pred_b: Sequence,
    classes: Sequence[str],
    cost_matrix: Sequence[Sequence[float]] | np.ndarray,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    stratify: bool = False,
) -> CostDifference:
    """Paired bootstrap of the average (and total) misclassification-cost difference A - B.

    Both models are scored on the same resampled images, so image difficulty cancels. The
    resample size is the test-set size, so the total-cost interval is n times the average's.
    The two-sided p-value inverts the percentile interval, 2 * min(P*(d <= 0), P*(d >= 0)),
    with the usual +1 in numerator and denominator so that it is never exactly 0.
    """
    cost = np.asarray(cost_matrix, dtype=float)
    true = label_codes(y_true, classes)
    cost_a = cost[true, label_codes(pred_a, classes)]
    cost_b = cost[true, label_codes(pred_b, classes)]
    difference = cost_a - cost_b
    n = len(difference)
    if n == 0:
        raise ValueError("no images to compare")
    indices = resample_indices(n_resamples, true, np.random.default_rng(seed), stratify)
    means = difference[indices].mean(axis=1)
    low, high = percentile_interval(means, level)
    below, above = np.sum(means <= 0), np.sum(means >= 0)
    p = min(1.0, 2.0 * (1 + min(below, above)) / (n_resamples + 1))
    return CostDifference(
        n=n,
        average_difference=float(difference.mean()),
        total_difference=float(difference.sum()),
        bootstrap_mean=float(means.mean()),
        ci_low=float(low),
        ci_high=float(high),
        total_ci_low=float(low * n),
        total_ci_high=float(high * n),
        p_value=float(p),
        n_resamples=n_resamples,
    )


# --- all model pairs ---------------------------------------------------------------------------


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values: controls the family-wise error rate over the family."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def aligned_pair(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    """true, pred_a, pred_b on the images both tables share by id; other sets are an error."""
    merged = a[["id", "true", "pred"]].merge(
        b[["id", "true", "pred"]], on="id", how="outer", suffixes=("_a", "_b"), indicator=True
    )
    if (merged["_merge"] != "both").any():
        raise ValueError(f"models {names[0]} and {names[1]} were not tested on the same images")
    if (merged["true_a"] != merged["true_b"]).any():
        raise ValueError(f"models {names[0]} and {names[1]} disagree on the true labels")
    return merged.rename(columns={"true_a": "true"})[["id", "true", "pred_a", "pred_b"]]


PAIR_COLUMNS = [
    "model_a",
    "model_b",
    "n",
    "accuracy_a",
    "accuracy_b",
    "accuracy_difference",
    "mcnemar_b",
    "mcnemar_c",
    "mcnemar_statistic",
    "mcnemar_method",
    "mcnemar_p",
    "cost_difference",
    "cost_ci_low",
    "cost_ci_high",
    "total_cost_difference",
    "total_cost_ci_low",
    "total_cost_ci_high",
    "cost_p",
]


def pairwise_comparisons(
    predictions_by_model: Mapping[str, pd.DataFrame],
    cost_matrix: Sequence[Sequence[float]] | np.ndarray,
    classes: Sequence[str],
    alpha: float = 0.05,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    stratify: bool = False,
    split: str | None = "test",
) -> pd.DataFrame:
    """One row per model pair (A, B): accuracy difference A - B, McNemar, paired cost difference.

    Each predictions table needs id, true, pred (and split, filtered to `split`). Holm's
    correction runs over all pairs separately for the McNemar p-values (`mcnemar_p_holm`) and
    the cost p-values (`cost_p_holm`). `significant` flags pairs whose accuracies differ after
    correction (mcnemar_p_holm < alpha); `cost_significant` does the same for cost.
    """
    tables = {name: split_rows(table, split) for name, table in predictions_by_model.items()}
    rows = []
    for name_a, name_b in combinations(tables, 2):
        pair = aligned_pair(tables[name_a], tables[name_b], (name_a, name_b))
        accuracy_a = float((pair["pred_a"] == pair["true"]).mean())
        accuracy_b = float((pair["pred_b"] == pair["true"]).mean())
        mcnemar = mcnemar_test(pair["true"], pair["pred_a"], pair["pred_b"])
        cost = paired_bootstrap_cost_difference(
            pair["true"],
            pair["pred_a"],
            pair["pred_b"],
            classes,
            cost_matrix,
            n_resamples,
            level,
            seed,
            stratify,
        )
        rows.append(
            {
                "model_a": name_a,
                "model_b": name_b,
                "n": len(pair),
                "accuracy_a": accuracy_a,
                "accuracy_b": accuracy_b,
                "accuracy_difference": accuracy_a - accuracy_b,
                **{f"mcnemar_{k}": v for k, v in asdict(mcnemar).items() if k != "p_value"},
                "mcnemar_p": mcnemar.p_value,
                "cost_difference": cost.average_difference,
                "cost_ci_low": cost.ci_low,
                "cost_ci_high": cost.ci_high,
                "total_cost_difference": cost.total_difference,
                "total_cost_ci_low": cost.total_ci_low,
                "total_cost_ci_high": cost.total_ci_high,
                "cost_p": cost.p_value,
            }
        )
    table = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    if table.empty:  # one model: no pairs, but the columns, so the file reads back
        return table.assign(mcnemar_p_holm=[], cost_p_holm=[], significant=[], cost_significant=[])
    table["mcnemar_p_holm"] = holm_adjust(table["mcnemar_p"])
    table["cost_p_holm"] = holm_adjust(table["cost_p"])
    table["significant"] = table["mcnemar_p_holm"] < alpha
    table["cost_significant"] = table["cost_p_holm"] < alpha
    return table
