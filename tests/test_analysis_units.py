"""Leakage twins, repeated splits, the evaluator's uncertainty block and significance marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leukbench.evaluation import FIGURES, cost_weighted_confusion, evaluate_uncertainty
from leukbench.report_analysis import model_key, repeats_summary, significance, with_ci
from leukbench.splits import resplit
from leukbench.tasks import leakage_twins, resolved_protocol

SETTINGS = {
    "bootstrap_resamples": 300,
    "ci_level": 0.95,
    "ece_bins": 10,
    "temperature_scaling": True,
}


def _config() -> dict:
    return {
        "datasets": {
            "ids": {"classes": ["a", "b"], "group_regex": "^(P\\d+)_"},
            "noids": {"classes": ["a", "b"], "group_regex": None},
        },
        "tasks": {
            "patients": {"dataset": "ids", "protocol": "auto", "published": {"rows": []}},
            "images": {"dataset": "noids", "protocol": "auto", "title": "x"},
            "proxied": {"dataset": "noids", "protocol": "proxy"},
        },
        "models": {"svm": {}, "cnn": {}},
        "leakage": {"check": True, "models": None},
    }


def test_every_task_gets_the_other_protocol_as_its_twin() -> None:
    twins = leakage_twins(_config())
    assert set(twins) == {"patients__image", "images__proxy"}  # a proxy task has no twin
    assert twins["patients__image"]["protocol"] == "image"
    assert twins["images__proxy"] == {"dataset": "noids", "protocol": "proxy", "twin_of": "images"}
    assert "published" not in twins["patients__image"]


def test_twins_can_be_limited_to_some_models_or_switched_off() -> None:
    config = _config()
    config["leakage"]["models"] = ["svm"]
    assert leakage_twins(config)["images__proxy"]["models"] == ["svm"]
    config["leakage"]["check"] = False
    assert leakage_twins(config) == {}


def test_resolved_protocol_follows_the_group_ids() -> None:
    config = _config()
    assert resolved_protocol(config["tasks"]["patients"], config["datasets"]["ids"]) == "group"
    assert resolved_protocol(config["tasks"]["images"], config["datasets"]["noids"]) == "image"


def _splits(protocol: str) -> pd.DataFrame:
    rows = [
        {"id": f"{c}{i:02d}", "label": c, "group": f"P{i // 3}{c}", "split": "train"}
        for c in "ab"
        for i in range(30)
    ]
    return pd.DataFrame(rows).assign(protocol=protocol)


@pytest.mark.parametrize("protocol", ["group", "proxy"])
def test_resplit_keeps_groups_together_and_changes_with_the_seed(protocol: str) -> None:
    ratios = {"train": 0.6, "val": 0.2, "test": 0.2}
    first, second = resplit(_splits(protocol), ratios, 1), resplit(_splits(protocol), ratios, 2)
    assert (first.groupby("group")["split"].nunique() == 1).all()
    assert (first["protocol"] == protocol).all()
    assert set(first["id"]) == set(second["id"])
    assert not first.set_index("id")["split"].equals(second.set_index("id")["split"])


def test_image_level_resplit_is_stratified() -> None:
    again = resplit(_splits("image"), {"train": 0.6, "val": 0.2, "test": 0.2}, 3)
    counts = pd.crosstab(again["label"], again["split"])
    assert (counts["test"] == 6).all() and (counts["train"] == 18).all()


def _predictions(rng: np.random.Generator, n: int = 200) -> pd.DataFrame:
    true = rng.integers(0, 2, size=n)
    p1 = np.clip(0.5 + (true - 0.5) * 0.6 + rng.normal(0, 0.2, n), 0.01, 0.99)
    pred = (p1 > 0.5).astype(int)
    names = np.array(["a", "b"])
    return pd.DataFrame(
        {
            "id": [f"i{k}" for k in range(n)],
            "split": np.where(np.arange(n) % 2 == 0, "test", "val"),
            "true": names[true],
            "pred": names[pred],
            "prob_a": 1 - p1,
            "prob_b": p1,
        }
    )


def test_evaluate_uncertainty_gives_cis_calibration_and_curves(tmp_path: Path) -> None:
    predictions = _predictions(np.random.default_rng(0))
    cost = [[0, 1], [5, 0]]
    block = evaluate_uncertainty(predictions, ["a", "b"], cost, SETTINGS, 7, tmp_path / "ev")
    ci = {row["metric"]: row for row in block["ci"]}
    test = predictions[predictions["split"] == "test"]
    assert ci["accuracy"]["value"] == pytest.approx((test["true"] == test["pred"]).mean())
    assert ci["accuracy"]["ci_low"] < ci["accuracy"]["value"] < ci["accuracy"]["ci_high"]
    assert 0 < block["calibration"]["ece"] < 1
    assert block["calibration"]["temperature"]["temperature"] > 0
    assert 0.5 < block["auc"]["roc"]["b"] <= 1.0
    assert all((tmp_path / "ev" / name).stat().st_size > 0 for name in FIGURES)
    again = evaluate_uncertainty(predictions, ["a", "b"], cost, SETTINGS, 7, tmp_path / "ev2")
    assert again["ci"] == block["ci"]  # seeded


def test_cost_weighted_confusion_multiplies_cell_by_cell() -> None:
    weighted = cost_weighted_confusion([[5, 2], [1, 7]], [[0, 1], [5, 0]])
    assert weighted.tolist() == [[0, 2], [5, 0]]


def test_significance_marks_against_the_best_model() -> None:
    comparisons = pd.DataFrame(
        {
            "model_a": ["O/svm", "O/svm"],
            "model_b": ["O/xgb", "O/cnn"],
            "mcnemar_p_holm": [0.40, 0.001],
            "significant": [False, True],
            "cost_p_holm": [0.5, 0.02],
            "cost_significant": [False, True],
        }
    )
    marks = significance(
        comparisons, ["O/svm", "O/xgb", "O/cnn"], {"O/svm": 0.99, "O/xgb": 0.98, "O/cnn": 0.8}
    )
    assert marks["O/svm"] == ("best", "best")
    assert marks["O/xgb"] == ("n.s. (p=0.4)", "n.s. (p=0.5)")
    assert marks["O/cnn"] == ("p=0.001 *", "p=0.02 *")


def test_repeats_summary_and_ci_formatting(tmp_path: Path) -> None:
    folder = tmp_path / "Original" / "svm"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"split_seed": [1, 2], "metric": ["accuracy", "accuracy"], "value": [0.9, 0.8]}
    ).to_csv(folder / "repeats.tsv", sep="\t", index=False)
    assert model_key(folder / "repeats.tsv") == "Original/svm"
    summary = repeats_summary([str(folder / "repeats.tsv")])
    assert summary["Original/svm"]["accuracy"] == "0.8500 ± 0.0707 (n=2)"
    assert with_ci(0.5, 0.25, 0.75, 2) == "0.50 [0.25, 0.75]"
    assert with_ci(0.5, float("nan"), 0.75, 2) == "0.50"
