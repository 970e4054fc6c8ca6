"""Calibration and threshold analysis of predicted probabilities.

Top-label expected calibration error and reliability diagrams, ROC and precision-recall curves
(binary, or one-vs-rest per class with a macro average), F1 against the decision threshold, and
temperature scaling fitted on the validation split.

Inputs are a probability matrix P[image, class] whose columns follow `classes`, and the true
class indices; `probability_matrix` builds both from a predictions table (true, prob_<class>).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from leukbench.stats import label_codes

EPSILON = 1e-12  # floor for probabilities before taking logs: a model may output exact zeros
MACRO = "macro"


def probability_matrix(
    predictions: pd.DataFrame, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(P[image, class] from the prob_<class> columns, true class indices from `true`)."""
    missing = [f"prob_{c}" for c in classes if f"prob_{c}" not in predictions.columns]
    if missing:
        raise ValueError(f"the predictions table lacks the probability columns {missing}")
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    return probs, label_codes(predictions["true"], classes)


# --- expected calibration error ----------------------------------------------------------------


def reliability_table(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Top-label reliability per equal-width confidence bin (lower, upper].

    Columns bin, lower, upper, count, confidence (mean top probability), accuracy (share whose
    top class is right) and gap = accuracy - confidence; empty bins have NaN means.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.digitize(confidence, edges[1:-1], right=True)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, correct, minlength=n_bins) / count
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": count,
            "confidence": mean_confidence,
            "accuracy": accuracy,
            "gap": accuracy - mean_confidence,
        }
    )


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over bins of (bin count / n) * |accuracy - mean confidence|."""
    table = reliability_table(probs, labels, n_bins)
    filled = table[table["count"] > 0]
    return float((filled["count"] * filled["gap"].abs()).sum() / table["count"].sum())


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log P[image, true class]."""
    probs = np.asarray(probs, dtype=float)
    picked = probs[np.arange(len(probs)), np.asarray(labels)]
    return float(-np.log(np.maximum(picked, EPSILON)).mean())


# --- temperature scaling -----------------------------------------------------------------------


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probs, dtype=float), EPSILON))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log P / T): log-probabilities stand in for logits (softmax(log p) = p).

    They differ from the model's logits by a per-image constant, which softmax ignores, so
    this is exactly temperature scaling of the logits. T > 1 softens, T < 1 sharpens.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return np.exp(log_softmax(_log_probs(probs) / temperature, axis=1))


def fit_temperature(
    val_probs: np.ndarray, val_labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The T minimising the validation NLL of apply_temperature(val_probs, T).

    Searched over log T (bounded Brent), which keeps T positive and the search symmetric
    between sharpening and softening.
    """
    logp = _log_probs(val_probs)
    labels = np.asarray(val_labels)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logp / np.exp(log_t), axis=1)[rows, labels].mean())

    result = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded")
    return float(np.exp(result.x))


@dataclass(frozen=True)
class TemperatureResult:
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float


def temperature_scaling(
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    test_probs: np.ndarray,
    test_labels: np.ndarray,
    n_bins: int = 15,
) -> TemperatureResult:
    """Fit T on validation; ECE and NLL on the test images before and after scaling."""
    temperature = fit_temperature(val_probs, val_labels)
    scaled = apply_temperature(test_probs, temperature)
    return TemperatureResult(
        temperature=temperature,
        ece_before=expected_calibration_error(test_probs, test_labels, n_bins),
        ece_after=expected_calibration_error(scaled, test_labels, n_bins),
        nll_before=negative_log_likelihood(test_probs, test_labels),
        nll_after=negative_log_likelihood(scaled, test_labels),
    )


# --- ROC, precision-recall and F1-threshold curves ------------------------------------------


def one_vs_rest(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(class, is-that-class, its probability) per class; for two classes only the positive one.

    The binary positive class defaults to classes[1], the class a sigmoid output scores.
    """
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels)
    if len(classes) == 2:
        positive = classes[1] if positive is None else positive
        chosen = [list(classes).index(positive)]
    else:
        chosen = range(len(classes))
    for k in chosen:
        yield classes[k], labels == k, probs[:, k]


def _defined(truth: np.ndarray) -> bool:
    # A class absent from (or making up all of) the labels has no ROC or PR curve.
    return bool(truth.any() and not truth.all())


def roc_curves(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC curves (class, fpr, tpr, threshold) and areas (class, roc_auc).

    Multiclass adds a `macro` curve (per-class TPR interpolated on the union of FPRs, then
    averaged) and a macro AUC, the unweighted mean of the per-class AUCs, which is sklearn's
    roc_auc_score(multi_class="ovr", average="macro").
    """
    curves, areas = [], []
    for cls, truth, score in one_vs_rest(probs, labels, classes, positive):
        if not _defined(truth):
            areas.append({"class": cls, "roc_auc": np.nan})
            continue
        fpr, tpr, threshold = roc_curve(truth, score)
        curves.append(pd.DataFrame({"class": cls, "fpr": fpr, "tpr": tpr, "threshold": threshold}))
        areas.append({"class": cls, "roc_auc": float(roc_auc_score(truth, score))})
    curve_table = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    area_table = pd.DataFrame(areas)
    if len(classes) > 2 and curves:
        grid = np.unique(curve_table["fpr"])
        mean_tpr = np.mean([np.interp(grid, c["fpr"], c["tpr"]) for c in curves], axis=0)
        macro = pd.DataFrame({"class": MACRO, "fpr": grid, "tpr": mean_tpr, "threshold": np.nan})
        curve_table = pd.concat([curve_table, macro], ignore_index=True)
        area_table.loc[len(area_table)] = {"class": MACRO, "roc_auc": area_table["roc_auc"].mean()}
    return curve_table, area_table


def pr_curves(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Precision-recall curves (class, recall, precision, threshold) and areas (class, pr_auc).

    pr_auc is the average precision (step-wise area, no optimistic linear interpolation);
    multiclass adds its unweighted mean over classes as `macro`.
    """
    curves, areas = [], []
    for cls, truth, score in one_vs_rest(probs, labels, classes, positive):
        if not _defined(truth):
            areas.append({"class": cls, "pr_auc": np.nan})
            continue
        precision, recall, threshold = precision_recall_curve(truth, score)
        curves.append(
            pd.DataFrame(
                {
                    "class": cls,
                    "recall": recall,
                    "precision": precision,
                    # the final (recall 0, precision 1) point has no threshold
                    "threshold": np.append(threshold, np.nan),
                }
            )
        )
        areas.append({"class": cls, "pr_auc": float(average_precision_score(truth, score))})
    area_table = pd.DataFrame(areas)
    if len(classes) > 2:
        area_table.loc[len(area_table)] = {"class": MACRO, "pr_auc": area_table["pr_auc"].mean()}
    return (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()), area_table


def f1_threshold_curves(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], positive: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """F1 of "class if its probability >= threshold" at every distinct threshold.

    Binary tasks give the positive class (default classes[1]); multiclass gives one curve per
    class, one-vs-rest. Returns curves (class, threshold, precision, recall, f1) and the best
    threshold per class (class, threshold, f1; the lowest threshold among ties).
    """
    curves, best = [], []
    for cls, truth, score in one_vs_rest(probs, labels, classes, positive):
        if not truth.any():
            best.append({"class": cls, "threshold": np.nan, "f1": np.nan})
            continue
        precision, recall, threshold = precision_recall_curve(truth, score)
        precision, recall = precision[:-1], recall[:-1]  # drop the threshold-less end point
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
        curves.append(
            pd.DataFrame(
                {
                    "class": cls,
                    "threshold": threshold,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                }
            )
        )
        top = int(np.argmax(f1))  # thresholds ascend, so argmax takes the lowest of ties
        best.append({"class": cls, "threshold": float(threshold[top]), "f1": float(f1[top])})
    return (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()), pd.DataFrame(best)


# --- figures -----------------------------------------------------------------------------------


def _figure():
    # Imported here so the numbers above work in environments without matplotlib; Figure
    # without pyplot renders with Agg and leaves no global figure state behind.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0, 4.5), layout="constrained")
    return figure, figure.subplots()


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, format="png")
    return path


def reliability_diagram(
    probs: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    n_bins: int = 15,
    title: str | None = None,
) -> Path:
    """PNG of per-bin accuracy against confidence, the diagonal and the ECE; returns the path."""
    table = reliability_table(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins)
    figure, ax = _figure()
    width = table["upper"] - table["lower"]
    ax.bar(
        table["lower"],
        table["accuracy"].fillna(0),
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (top-class probability)",
        ylabel="accuracy",
        title=title or f"Reliability (ECE = {ece:.3f})",
    )
    ax.legend(loc="upper left")
    return _save(figure, path)


def _save_empty(figure: Any, ax: Any, path: str | Path, title: str) -> Path:
    """A figure saying why there is no curve, rather than no figure at all."""
    message = "undefined: the test split lacks\na positive or a negative image"
    ax.text(0.5, 0.5, message, ha="center")
    ax.set(xlim=(0, 1), ylim=(0, 1), title=title)
    return _save(figure, path)


def _plot_curves(
    curves: pd.DataFrame,
    areas: pd.DataFrame,
    x: str,
    y: str,
    area: str,
    path: str | Path,
    labels: tuple[str, str],
    title: str,
) -> Path:
    figure, ax = _figure()
    if curves.empty:
        return _save_empty(figure, ax, path, title)
    value = dict(zip(areas["class"], areas[area], strict=True))
    for cls, part in curves.groupby("class", sort=False):
        style = {"linestyle": "--", "color": "black"} if cls == MACRO else {}
        ax.plot(part[x], part[y], label=f"{cls} ({value.get(cls, np.nan):.3f})", **style)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=labels[0], ylabel=labels[1], title=title)
    ax.legend(loc="best", fontsize="small")
    return _save(figure, path)


def plot_roc(
    curves: pd.DataFrame, areas: pd.DataFrame, path: str | Path, title: str = "ROC"
) -> Path:
    """PNG of roc_curves' output, AUC in the legend."""
    axes = ("false positive rate", "true positive rate")
    return _plot_curves(curves, areas, "fpr", "tpr", "roc_auc", path, axes, title)


def plot_pr(
    curves: pd.DataFrame, areas: pd.DataFrame, path: str | Path, title: str = "Precision-recall"
) -> Path:
    """PNG of pr_curves' output, average precision in the legend."""
    return _plot_curves(
        curves, areas, "recall", "precision", "pr_auc", path, ("recall", "precision"), title
    )


def plot_f1_threshold(
    curves: pd.DataFrame, best: pd.DataFrame, path: str | Path, title: str = "F1 by threshold"
) -> Path:
    """PNG of f1_threshold_curves' output with each class's best threshold marked."""
    figure, ax = _figure()
    if curves.empty:
        return _save_empty(figure, ax, path, title)
    for cls, part in curves.groupby("class", sort=False):
        line = ax.plot(part["threshold"], part["f1"], label=str(cls))[0]
        top = best[best["class"] == cls].iloc[0]
        ax.scatter([top["threshold"]], [top["f1"]], color=line.get_color(), zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="threshold", ylabel="F1", title=title)
    ax.legend(loc="best", fontsize="small")
    return _save(figure, path)
