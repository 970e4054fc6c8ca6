"""SVM and XGBoost on handcrafted features, tuned on the fixed validation split."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import get_scorer
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_sample_weight
from xgboost import XGBClassifier

log = logging.getLogger(__name__)


def feature_matrix(features: pd.DataFrame, splits: pd.DataFrame, classes: list[str]):
    """Join features to splits; rows whose features failed are returned separately, not dropped."""
    usable = features[features["error"].fillna("") == ""].drop(columns="error")
    table = splits[["id", "label", "split"]].merge(usable, on="id", how="left")
    columns = [c for c in usable.columns if c != "id"]
    missing = table[table[columns].isna().any(axis=1)][["id", "split"]]
    table = table[~table["id"].isin(missing["id"])].reset_index(drop=True)
    y = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return table[["id", "label", "split"]], table[columns].to_numpy(np.float64), y, missing


def fit_svm(x_train, y_train, x_val, y_val, config: dict[str, Any], seed: int, n_jobs: int):
    scorer = get_scorer(config.get("selection_metric", "accuracy"))
    weight = "balanced" if config.get("class_weight", "balanced") == "balanced" else None
    search = []
    for params in ParameterGrid(config["grid"]):
        model = make_pipeline(StandardScaler(), SVC(class_weight=weight, **params))
        model.fit(x_train, y_train)
        score = scorer(model, x_val, y_val)
        search.append({**params, "val_score": float(score)})
        log.info("svm %s: validation %s = %.4f", params, scorer, score)
    best = max(search, key=lambda r: r["val_score"])  # first of equal scores: grid order decides
    params = {k: v for k, v in best.items() if k != "val_score"}
    # Platt scaling fitted by internal 5-fold CV, as SVC(probability=True) did before sklearn 1.9;
    # fewer folds when the smallest class has fewer than 5 training images.
    folds = min(5, int(np.bincount(y_train).min()))
    if folds < 2:
        raise ValueError(
            "the SVM needs at least 2 training images per class to calibrate its probabilities; "
            f"the smallest class has {folds}. Use more images or another split ratio"
        )
    if folds < 5:
        log.warning(
            "only %d images in the smallest class: Platt scaling uses %d folds", folds, folds
        )
    calibrated = CalibratedClassifierCV(
        SVC(class_weight=weight, random_state=seed, **params),
        method="sigmoid",
        cv=folds,
        ensemble=False,
    )
    model: Pipeline = make_pipeline(StandardScaler(), calibrated)
    model.fit(x_train, y_train)
    return model, {"best_params": params, "search": search}


def fit_xgboost(x_train, y_train, x_val, y_val, config: dict[str, Any], seed: int, n_jobs: int):
    n_classes = int(max(y_train.max(), y_val.max()) + 1)
    objective = "binary:logistic" if n_classes == 2 else "multi:softprob"
    model = XGBClassifier(
        tree_method="hist",
        objective=objective,
        random_state=seed,
        n_jobs=n_jobs,
        early_stopping_rounds=config.get("early_stopping_rounds", 50),
        eval_metric="logloss" if n_classes == 2 else "mlogloss",
        **config.get("params", {}),
    )
    weighted = config.get("class_weight", "balanced") == "balanced"
    model.fit(
        x_train,
        y_train,
        sample_weight=compute_sample_weight("balanced", y_train) if weighted else None,
        eval_set=[(x_val, y_val)],
        sample_weight_eval_set=[compute_sample_weight("balanced", y_val)] if weighted else None,
        verbose=False,
    )
    return model, {
        "best_iteration": int(model.best_iteration),
        "best_score": float(model.best_score),
    }


FAMILIES = {"svm": fit_svm, "xgboost": fit_xgboost}


def train_classic(
    features: pd.DataFrame,
    splits: pd.DataFrame,
    classes: list[str],
    config: dict[str, Any],
    seed: int,
    n_jobs: int = 1,
):
    """Fit one configured model; return (model, predictions for every split, info)."""
    family = config["family"]
    if family not in FAMILIES:
        raise ValueError(
            f"unknown classic model family '{family}'; expected one of {list(FAMILIES)}"
        )
    index, x, y, missing = feature_matrix(features, splits, classes)
    part = {s: (index["split"] == s).to_numpy() for s in ("train", "val")}
    model, info = FAMILIES[family](
        x[part["train"]], y[part["train"]], x[part["val"]], y[part["val"]], config, seed, n_jobs
    )
    probabilities = model.predict_proba(x)
    predictions = index.rename(columns={"label": "true"}).assign(
        pred=[classes[i] for i in probabilities.argmax(axis=1)]
    )
    for k, cls in enumerate(classes):
        predictions[f"prob_{cls}"] = probabilities[:, k]
    info["unpredicted"] = missing.to_dict("records")
    return model, predictions, info
