"""XGBoost explanations (leukbench.explain_classic) of models fitted by leukbench.classic on a
small synthetic table: 3 informative features and 2 of noise (test_classic's tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from PIL import Image
from test_classic import CLASSES, CONFIGS, SEED, synthetic_tables

from leukbench.classic import feature_matrix, train_classic
from leukbench.explain_classic import (
    IMPORTANCE,
    explain_xgboost,
    feature_names,
    gain_importance,
    load_classic_model,
    tree_shap,
    used_booster,
    write_explanation,
)
from leukbench.smk import read_tsv

INFORMATIVE = {"f0", "f1", "f2"}


def xgb_config(n_estimators: int = 120) -> dict[str, Any]:
    config = dict(CONFIGS["xgboost"])
    config["params"] = {**config["params"], "n_estimators": n_estimators}
    return config


@pytest.fixture(scope="module")
def multiclass() -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    features, splits = synthetic_tables()
    model, _, _ = train_classic(features, splits, CLASSES, xgb_config(), SEED)
    return model, features, splits


@pytest.fixture(scope="module")
def binary() -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    features, splits = synthetic_tables()
    keep = splits["label"].isin(CLASSES[:2])
    splits = splits[keep].reset_index(drop=True)
    model, _, _ = train_classic(features, splits, CLASSES[:2], xgb_config(), SEED)
    return model, features, splits


def test_early_stopping_leaves_trees_the_classifier_does_not_use(
    multiclass: tuple[Any, pd.DataFrame, pd.DataFrame],
) -> None:
    model, features, splits = multiclass
    full = model.get_booster()
    used = used_booster(model)
    assert used.num_boosted_rounds() == model.best_iteration + 1 < full.num_boosted_rounds()
    _, x, _, _ = feature_matrix(features, splits, CLASSES)
    margin = used.predict(xgb.DMatrix(x), output_margin=True)
    np.testing.assert_allclose(margin, model.predict(x, output_margin=True), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("which", ["multiclass", "binary"])
def test_contributions_sum_to_the_classifiers_margin(
    which: str, request: pytest.FixtureRequest
) -> None:
    model, features, splits = request.getfixturevalue(which)
    classes = CLASSES if which == "multiclass" else CLASSES[:2]
    _, x, _, _ = feature_matrix(features, splits, classes)
    contributions = tree_shap(used_booster(model), x)
    n_features = len(feature_names(features))
    if which == "multiclass":
        assert contributions.shape == (len(x), 3, n_features + 1)
    else:
        assert contributions.shape == (len(x), n_features + 1)
    margin = model.predict(x, output_margin=True)
    np.testing.assert_allclose(contributions.sum(axis=-1), margin, rtol=1e-5, atol=1e-4)
    if which == "binary":  # and through the sigmoid, the classifier's probabilities
        p = 1.0 / (1.0 + np.exp(-contributions.sum(axis=-1)))
        np.testing.assert_allclose(p, model.predict_proba(x)[:, 1], rtol=1e-5, atol=1e-6)


def test_gain_table_names_every_feature(
    multiclass: tuple[Any, pd.DataFrame, pd.DataFrame],
) -> None:
    model, features, _ = multiclass
    booster = used_booster(model)
    table = gain_importance(booster, feature_names(features))
    assert table["feature"].tolist() == ["f0", "f1", "f2", "f3", "f4"]
    score = booster.get_score(importance_type="gain")
    for i, row in table.iterrows():
        assert row["gain"] == pytest.approx(score.get(f"f{i}", 0.0))
    assert (table["total_gain"] >= table["gain"]).all()
    with pytest.raises(ValueError, match="features"):
        gain_importance(booster, ["f0", "f1"])


def test_informative_features_rank_first(
    multiclass: tuple[Any, pd.DataFrame, pd.DataFrame],
) -> None:
    model, features, splits = multiclass
    table = explain_xgboost(model, features, splits, CLASSES)
    assert set(table["feature"].iloc[:3]) == INFORMATIVE
    assert table[IMPORTANCE].is_monotonic_decreasing
    per_class = [f"{IMPORTANCE}_{c}" for c in CLASSES]
    np.testing.assert_allclose(table[per_class].mean(axis=1), table[IMPORTANCE], rtol=1e-6)
    # The test split's usable rows only: 3 x 6 test images, one of which failed.
    assert table.attrs["n_images"] == 17
    index, x, _, _ = feature_matrix(features, splits, CLASSES)
    test = x[(index["split"] == "test").to_numpy()]
    by_hand = np.abs(tree_shap(used_booster(model), test)[..., :-1]).mean(axis=(0, 1))
    expected = dict(zip(feature_names(features), by_hand, strict=True))
    for row in table.itertuples():
        assert getattr(row, IMPORTANCE) == pytest.approx(expected[row.feature])


def test_binary_model_has_one_importance_column(
    binary: tuple[Any, pd.DataFrame, pd.DataFrame],
) -> None:
    model, features, splits = binary
    table = explain_xgboost(model, features, splits, CLASSES[:2])
    assert [c for c in table.columns if c.startswith(IMPORTANCE)] == [IMPORTANCE]
    assert table["feature"].iloc[0] in INFORMATIVE


def test_write_from_a_saved_bundle(
    tmp_path: Path, multiclass: tuple[Any, pd.DataFrame, pd.DataFrame]
) -> None:
    model, features, splits = multiclass
    path = tmp_path / "model.joblib"
    joblib.dump({"model": model, "classes": CLASSES}, path)  # as train_classic.py saves it
    loaded, classes = load_classic_model(path)
    assert classes == CLASSES and isinstance(loaded, xgb.XGBClassifier)
    tsv, png = tmp_path / "out" / "importance.tsv", tmp_path / "out" / "importance.png"
    table = write_explanation(path, features, splits, tsv, png, top_k=3)
    written = read_tsv(tsv)
    assert written.columns.tolist() == [
        "feature",
        "gain",
        "total_gain",
        IMPORTANCE,
        *(f"{IMPORTANCE}_{c}" for c in CLASSES),
    ]
    pd.testing.assert_frame_equal(written, table.reset_index(drop=True), check_exact=False)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 500


def test_svm_models_are_refused() -> None:
    features, splits = synthetic_tables()
    model, _, _ = train_classic(features, splits, CLASSES, CONFIGS["svm"], SEED)
    with pytest.raises(TypeError, match="XGBoost"):
        explain_xgboost(model, features, splits, CLASSES)
