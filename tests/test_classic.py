"""SVM and XGBoost on a small separable feature table with a fixed train/val/test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from leukbench.classic import feature_matrix, train_classic

CLASSES = ["Benign", "Early", "Pre"]
N_PER_CLASS = 40
SEED = 123
CONFIGS: dict[str, dict[str, Any]] = {
    "svm": {
        "family": "svm",
        "class_weight": "balanced",
        "selection_metric": "accuracy",
        "grid": {"kernel": ["rbf"], "C": [1, 10], "gamma": ["scale", 0.01]},
    },
    "xgboost": {
        "family": "xgboost",
        "class_weight": "balanced",
        "early_stopping_rounds": 10,
        "params": {
            "n_estimators": 60,
            "learning_rate": 0.3,
            "max_depth": 3,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
        },
    },
}
FAILED_IDS = ["Early/000", "Pre/039"]  # their feature extraction failed


def synthetic_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, splits): 3 classes x 40 rows; 3 informative columns and 2 of noise."""
    rng = np.random.default_rng(0)
    feature_rows, split_rows = [], []
    centres = np.array([[0, 0, 0], [4, 0, 2], [0, 4, -2]], dtype=float)
    for c, cls in enumerate(CLASSES):
        for n in range(N_PER_CLASS):
            image_id = f"{cls}/{n:03d}"
            informative = centres[c] + rng.normal(scale=0.7, size=3)
            noise = rng.normal(size=2)
            row = {"id": image_id, "error": ""}
            row |= {f"f{k}": float(v) for k, v in enumerate([*informative, *noise])}
            feature_rows.append(row)
            split = "train" if n < 26 else "val" if n < 34 else "test"
            split_rows.append({"id": image_id, "label": cls, "split": split})
    features = pd.DataFrame(feature_rows)
    failed = features["id"].isin(FAILED_IDS)
    features.loc[failed, "error"] = "ImageError: corrupt or truncated image"
    features.loc[failed, [f"f{k}" for k in range(5)]] = np.nan
    return features, pd.DataFrame(split_rows)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trained(request: pytest.FixtureRequest) -> tuple[str, pd.DataFrame, dict]:
    features, splits = synthetic_tables()
    _, predictions, info = train_classic(features, splits, CLASSES, CONFIGS[request.param], SEED)
    return request.param, predictions, info


def test_prediction_columns_and_every_split(trained: tuple[str, pd.DataFrame, dict]) -> None:
    _, predictions, _ = trained
    assert set(predictions.columns) == {"id", "split", "true", "pred"} | {
        f"prob_{c}" for c in CLASSES
    }
    assert [c for c in predictions.columns if c.startswith("prob_")] == [
        f"prob_{c}" for c in CLASSES
    ]
    assert set(predictions["split"]) == {"train", "val", "test"}
    assert set(predictions["pred"]) <= set(CLASSES)
    assert predictions["id"].is_unique


def test_probabilities_sum_to_one(trained: tuple[str, pd.DataFrame, dict]) -> None:
    _, predictions, _ = trained
    probabilities = predictions[[f"prob_{c}" for c in CLASSES]].to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_probability_columns_line_up_with_the_classes(
    trained: tuple[str, pd.DataFrame, dict],
) -> None:
    family, predictions, _ = trained
    probabilities = predictions[[f"prob_{c}" for c in CLASSES]].to_numpy()
    most_likely = np.asarray(CLASSES)[probabilities.argmax(axis=1)]
    agreement = (most_likely == predictions["pred"].to_numpy()).mean()
    # XGBoost predicts the arg-max; SVC decides by margin, which agrees with Platt scaling mostly
    assert agreement == 1.0 if family == "xgboost" else agreement > 0.9


def test_high_accuracy_on_separable_data(trained: tuple[str, pd.DataFrame, dict]) -> None:
    family, predictions, _ = trained
    for split in ("train", "test"):
        part = predictions[predictions["split"] == split]
        accuracy = (part["true"] == part["pred"]).mean()
        assert accuracy > 0.8, (family, split, accuracy)


def test_failed_rows_are_reported_and_not_predicted(
    trained: tuple[str, pd.DataFrame, dict],
) -> None:
    _, predictions, info = trained
    assert not predictions["id"].isin(FAILED_IDS).any()
    assert len(predictions) == len(CLASSES) * N_PER_CLASS - len(FAILED_IDS)
    assert sorted(info["unpredicted"], key=lambda r: r["id"]) == [
        {"id": "Early/000", "split": "train"},
        {"id": "Pre/039", "split": "test"},
    ]


def test_model_specific_info(trained: tuple[str, pd.DataFrame, dict]) -> None:
    family, _, info = trained
    if family == "svm":
        assert len(info["search"]) == 4  # 2 C x 2 gamma
        assert set(info["best_params"]) == {"kernel", "C", "gamma"}
        best = max(r["val_score"] for r in info["search"])
        assert best > 0.8
    else:
        assert 0 <= info["best_iteration"] < CONFIGS["xgboost"]["params"]["n_estimators"]
        assert np.isfinite(info["best_score"])


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_same_seed_same_results(family: str) -> None:
    features, splits = synthetic_tables()
    runs = [train_classic(features, splits, CLASSES, CONFIGS[family], SEED) for _ in range(2)]
    (_, first, first_info), (_, second, second_info) = runs
    pd.testing.assert_frame_equal(first, second)
    assert first_info == second_info


def test_nan_error_cells_count_as_no_error() -> None:
    """A features table read back from TSV has NaN, not '', where there was no error."""
    features, splits = synthetic_tables()
    features["error"] = features["error"].replace("", np.nan)
    _, predictions, info = train_classic(features, splits, CLASSES, CONFIGS["svm"], SEED)
    assert len(predictions) == len(CLASSES) * N_PER_CLASS - len(FAILED_IDS)
    assert len(info["unpredicted"]) == len(FAILED_IDS)


def test_ids_missing_from_the_features_table_are_reported() -> None:
    features, splits = synthetic_tables()
    features = features[features["id"] != "Benign/030"]
    index, x, y, missing = feature_matrix(features, splits, CLASSES)
    assert set(missing["id"]) == {"Benign/030", *FAILED_IDS}
    assert len(index) == len(x) == len(y) == len(splits) - 3
    assert x.shape[1] == 5 and np.isfinite(x).all()
    assert set(y) == {0, 1, 2}


def test_unknown_family_is_refused() -> None:
    features, splits = synthetic_tables()
    with pytest.raises(ValueError, match="unknown classic model family 'forest'"):
        train_classic(features, splits, CLASSES, {"family": "forest"}, SEED)


def test_svm_calibrates_with_fewer_folds_when_classes_are_tiny() -> None:
    features, splits = synthetic_tables()
    # Keep 3 training images per class: 5-fold Platt scaling would be impossible.
    keep = splits["split"].ne("train") | splits["id"].str.endswith(("000", "001", "002"))
    _, predictions, _ = train_classic(features, splits[keep], CLASSES, CONFIGS["svm"], SEED)
    test = predictions[predictions["split"] == "test"]
    assert len(test) > 0 and (test["true"] == test["pred"]).mean() > 0.6


def test_svm_with_one_training_image_in_a_class_says_why() -> None:
    features, splits = synthetic_tables()
    keep = (
        splits["split"].ne("train")
        | ~splits["id"].str.startswith("Early/")
        | splits["id"].eq("Early/000")
    )
    with pytest.raises(ValueError, match="at least 2 training images per class"):
        train_classic(features, splits[keep], CLASSES, CONFIGS["svm"], SEED)
