"""Which handcrafted features an XGBoost model uses: gain importance and TreeSHAP contributions.

The model is what ``train_classic.py`` saves in ``model.joblib``: ``{"model": XGBClassifier,
"classes": [...]}``, the classifier fitted by :func:`leukbench.classic.fit_xgboost` on a bare
NumPy matrix (so the booster's features are ``f0, f1, ...``, in the column order of
:func:`leukbench.classic.feature_matrix`: the features table without ``id`` and ``error``).
Class weights only weighted the training rows; they are not part of the model.

Early stopping: the classifier predicts with the trees up to ``best_iteration``, while
``Booster.predict`` and ``get_score`` would use every tree grown, including the ``patience``
rounds after the best one. Both explanations therefore use the booster sliced to the trees the
classifier predicts with.

* Gain: XGBoost's ``gain`` (mean loss reduction of the splits on a feature) and ``total_gain``;
  a feature never split on has 0.
* Contributions: XGBoost's built-in TreeSHAP (``pred_contribs=True``): per image, class and
  feature, additive contributions to the margin (log-odds), summing with the bias term to the
  margin exactly. Reported as the mean |contribution| over the explained images (default: the
  test split), overall (mean over classes too) and per class for more than two classes; a
  binary model has one margin, that of the second class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import matplotlib
import numpy as np
import pandas as pd
import xgboost as xgb

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from leukbench.classic import feature_matrix

__all__ = [
    "explain_xgboost",
    "feature_names",
    "gain_importance",
    "load_classic_model",
    "plot_explanation",
    "tree_shap",
    "used_booster",
    "write_explanation",
]

IMPORTANCE = "mean_abs_contribution"


def load_classic_model(path: str | Path) -> tuple[Any, list[str] | None]:
    """(model, classes) from a ``model.joblib`` bundle (or a bare pickled model: classes None)."""
    bundle = joblib.load(path)
    if isinstance(bundle, dict):
        return bundle["model"], list(bundle.get("classes") or []) or None
    return bundle, None


def used_booster(model: Any) -> xgb.Booster:
    """The booster an ``XGBClassifier`` (or a Booster) predicts with: sliced at best_iteration
    when early stopping recorded one."""
    if isinstance(model, xgb.XGBModel):
        booster = model.get_booster()
    elif isinstance(model, xgb.Booster):
        booster = model
    else:
        raise TypeError(
            f"explanations need an XGBoost model, got {type(model).__name__} "
            "(SVM models have no tree explanations)"
        )
    try:
        best = booster.best_iteration
    except AttributeError:  # no early stopping: every tree counts
        return booster
    return booster[: best + 1]


def feature_names(features: pd.DataFrame) -> list[str]:
    """The model's feature columns, in the order :func:`leukbench.classic.feature_matrix` uses."""
    return [c for c in features.columns if c not in ("id", "error")]


def _check_width(booster: xgb.Booster, names: Sequence[str]) -> None:
    if booster.num_features() != len(names):
        raise ValueError(
            f"the model has {booster.num_features()} features, the table {len(names)}: "
            "not the features this model was trained on"
        )


def gain_importance(booster: xgb.Booster, names: Sequence[str]) -> pd.DataFrame:
    """feature, gain (mean per split), total_gain; 0 for features the trees never split on."""
    _check_width(booster, names)
    columns = {}
    for kind in ("gain", "total_gain"):
        score = booster.get_score(importance_type=kind)
        columns[kind] = [float(score.get(f"f{i}", score.get(n, 0.0))) for i, n in enumerate(names)]
    return pd.DataFrame({"feature": list(names), **columns})


def tree_shap(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """TreeSHAP contributions to the margin: (n, F + 1) for a binary model, (n, K, F + 1)
    otherwise; the last column is the bias. Rows sum to ``output_margin`` predictions."""
    return booster.predict(xgb.DMatrix(np.asarray(x, np.float64)), pred_contribs=True)


def explain_xgboost(
    model: Any,
    features: pd.DataFrame,
    splits: pd.DataFrame,
    classes: Sequence[str],
    split: str | None = "test",
) -> pd.DataFrame:
    """One row per feature: gain, total_gain, mean |TreeSHAP contribution| over the `split`
    images (every usable image when None) and, for more than two classes, per class; sorted by
    the mean |contribution|, largest first.

    `features` is the features table (id, error, feature columns) and `splits` the split table
    (id, label, split), as for :func:`leukbench.classic.train_classic`; images whose features
    failed are left out as there.
    """
    booster = used_booster(model)
    names = feature_names(features)
    table = gain_importance(booster, names)
    index, x, _, _ = feature_matrix(features, splits, list(classes))
    if split is not None:
        x = x[(index["split"] == split).to_numpy()]
    if len(x) == 0:
        raise ValueError(f"no usable images in split {split!r} to explain")
    contributions = np.abs(tree_shap(booster, x)[..., :-1]).astype(np.float64)  # no bias
    table[IMPORTANCE] = contributions.reshape(-1, len(names)).mean(axis=0)
    if contributions.ndim == 3:
        for k, cls in enumerate(classes):
            table[f"{IMPORTANCE}_{cls}"] = contributions[:, k].mean(axis=0)
    table.attrs["n_images"] = len(x)
    return table.sort_values([IMPORTANCE, "feature"], ascending=[False, True], kind="stable")


def _bars(ax: Any, table: pd.DataFrame, column: str, top_k: int, title: str) -> None:
    top = table.nlargest(top_k, column, keep="first").iloc[::-1]  # largest at the top
    ax.barh(top["feature"], top[column], color="#4c72b0")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.tick_params(axis="x", labelsize=7)


def plot_explanation(table: pd.DataFrame, out_png: str | Path, top_k: int = 20) -> Path:
    """Two bar charts of the `top_k` features: by gain and by mean |TreeSHAP contribution|."""
    top_k = min(top_k, len(table))
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.5 + 0.28 * top_k))
    _bars(axes[0], table, "gain", top_k, f"XGBoost gain (top {top_k})")
    n = table.attrs.get("n_images")
    where = f" over {n} images" if n else ""
    _bars(axes[1], table, IMPORTANCE, top_k, f"mean |TreeSHAP contribution| (log-odds){where}")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_explanation(
    model: Any,
    features: pd.DataFrame,
    splits: pd.DataFrame,
    out_tsv: str | Path,
    out_png: str | Path,
    *,
    classes: Sequence[str] | None = None,
    top_k: int = 20,
    split: str | None = "test",
) -> pd.DataFrame:
    """:func:`explain_xgboost` written as a TSV and plotted (:func:`plot_explanation`).

    `model` is a ``model.joblib`` path (its classes are used unless `classes` is given) or a
    fitted model (then `classes` is required).
    """
    if isinstance(model, str | Path):
        model, saved = load_classic_model(model)
        classes = classes or saved
    if not classes:
        raise ValueError("the class names are unknown: pass classes")
    table = explain_xgboost(model, features, splits, classes, split)
    out = Path(out_tsv)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, sep="\t", index=False, na_rep="NaN")
    plot_explanation(table, out_png, top_k)
    return table
