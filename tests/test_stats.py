"""Bootstrap CIs, McNemar, paired cost differences, Holm and repeat summaries, checked by hand."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from leukbench.metrics import HEADLINE, classification_metrics
from leukbench.stats import (
    bootstrap_ci,
    confusion_matrices,
    confusion_scores,
    holm_adjust,
    label_codes,
    mcnemar_test,
    paired_bootstrap_cost_difference,
    pairwise_comparisons,
    resample_indices,
    resample_metrics,
)

CLASSES = ["Benign", "Early", "Pre", "Pro"]
COST = np.array([[0, 10, 20, 30], [10, 0, 15, 25], [20, 15, 0, 10], [30, 25, 10, 0]], float)


def noisy_predictions(n: int, accuracy: float, seed: int, split: str = "test") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    true = rng.choice(CLASSES, n)
    wrong = rng.random(n) > accuracy
    pred = np.where(wrong, rng.choice(CLASSES, n), true)
    return pd.DataFrame(
        {"id": [f"img{i:04d}" for i in range(n)], "true": true, "pred": pred, "split": split}
    )


def mcnemar_case(both: int, b: int, c: int, neither: int) -> tuple[list, list, list]:
    """Labels where A and B are both right `both` times, only A `b`, only B `c`, none `neither`."""
    true = ["x"] * (both + b + c + neither)
    pred_a = ["x"] * both + ["x"] * b + ["y"] * c + ["y"] * neither
    pred_b = ["x"] * both + ["y"] * b + ["x"] * c + ["y"] * neither
    return true, pred_a, pred_b


# --- McNemar -----------------------------------------------------------------------------------


def test_mcnemar_exact_for_few_discordant_pairs() -> None:
    result = mcnemar_test(*mcnemar_case(both=50, b=7, c=1, neither=3))
    # two-sided binomial: 2 * P(X <= 1 | n=8, 1/2) = 2 * (1 + 8) / 256
    assert (result.b, result.c, result.method) == (7, 1, "exact")
    assert result.statistic == 1
    assert result.p_value == pytest.approx(18 / 256)


def test_mcnemar_chi_square_with_continuity_correction() -> None:
    result = mcnemar_test(*mcnemar_case(both=100, b=30, c=10, neither=5))
    statistic = (abs(30 - 10) - 1) ** 2 / 40  # 9.025
    assert (result.b, result.c, result.method) == (30, 10, "chi2_corrected")
    assert result.statistic == pytest.approx(9.025)
    # chi-square on 1 df: P(X > x) = erfc(sqrt(x / 2))
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(statistic / 2)))


def test_mcnemar_switches_to_chi_square_at_25_discordant_pairs() -> None:
    assert mcnemar_test(*mcnemar_case(10, 12, 12, 0)).method == "exact"
    assert mcnemar_test(*mcnemar_case(10, 12, 12, 0)).p_value == pytest.approx(1.0)
    assert mcnemar_test(*mcnemar_case(10, 13, 12, 0)).method == "chi2_corrected"


def test_mcnemar_without_discordant_pairs_gives_p_one() -> None:
    result = mcnemar_test(*mcnemar_case(20, 0, 0, 4))
    assert (result.b, result.c, result.p_value) == (0, 0, 1.0)


# --- bootstrap CIs -----------------------------------------------------------------------------


def test_bootstrap_ci_contains_point_estimate_and_matches_the_evaluator() -> None:
    predictions = noisy_predictions(300, 0.8, seed=1)
    table = bootstrap_ci(predictions, CLASSES, COST, n_resamples=500, seed=3)
    assert table["metric"].tolist() == list(HEADLINE)
    point = classification_metrics(predictions["true"], predictions["pred"], CLASSES, COST)
    for row in table.itertuples():
        assert row.value == pytest.approx(point[row.metric])
        assert row.ci_low <= row.value <= row.ci_high
        assert row.ci_low < row.ci_high  # 300 noisy images: no metric is constant


def test_bootstrap_ci_is_reproducible_and_seed_dependent() -> None:
    predictions = noisy_predictions(200, 0.7, seed=2)
    first = bootstrap_ci(predictions, CLASSES, COST, n_resamples=300, seed=11)
    again = bootstrap_ci(predictions, CLASSES, COST, n_resamples=300, seed=11)
    other = bootstrap_ci(predictions, CLASSES, COST, n_resamples=300, seed=12)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first[["ci_low", "ci_high"]], other[["ci_low", "ci_high"]])
    pd.testing.assert_series_equal(first["value"], other["value"])


def test_bootstrap_ci_narrows_with_a_lower_level() -> None:
    predictions = noisy_predictions(200, 0.7, seed=2)
    wide = bootstrap_ci(predictions, CLASSES, COST, n_resamples=400, level=0.95, seed=5)
    narrow = bootstrap_ci(predictions, CLASSES, COST, n_resamples=400, level=0.5, seed=5)
    assert ((narrow["ci_high"] - narrow["ci_low"]) < (wide["ci_high"] - wide["ci_low"])).all()


def test_bootstrap_ci_of_a_perfect_model_is_a_point() -> None:
    predictions = noisy_predictions(100, 1.0, seed=4)
    table = bootstrap_ci(predictions, CLASSES, COST, n_resamples=200).set_index("metric")
    assert table.loc["accuracy", ["value", "ci_low", "ci_high"]].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["total_cost", ["value", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]


def test_bootstrap_ci_uses_only_the_requested_split() -> None:
    test = noisy_predictions(100, 1.0, seed=4)
    train = noisy_predictions(100, 0.0, seed=5, split="train")
    both = pd.concat([test, train], ignore_index=True)
    table = bootstrap_ci(both, CLASSES, COST, n_resamples=100).set_index("metric")
    assert table.loc["accuracy", "ci_low"] == 1.0
    with pytest.raises(ValueError, match="split == 'val'"):
        bootstrap_ci(both, CLASSES, COST, split="val")


def test_bootstrap_ci_is_fast_enough() -> None:
    predictions = noisy_predictions(500, 0.9, seed=6)
    start = time.perf_counter()
    bootstrap_ci(predictions, CLASSES, COST, n_resamples=2000, seed=0, stratify=True)
    assert time.perf_counter() - start < 3.0


def test_vectorised_resample_metrics_equal_the_evaluator_on_every_resample() -> None:
    # Few images of a rare class, so some resamples lack it entirely (zero-division paths).
    rng = np.random.default_rng(7)
    true = np.array(["Benign"] * 2 + list(rng.choice(CLASSES[1:], 38)))
    pred = np.where(rng.random(40) < 0.6, true, rng.choice(CLASSES[1:], 40))
    t, p = label_codes(true, CLASSES), label_codes(pred, CLASSES)
    indices = resample_indices(100, t, rng, stratify=False)
    fast = resample_metrics(confusion_matrices(t, p, indices, 4), COST)
    lacking = [b for b in range(100) if 0 not in set(t[indices[b]]) | set(p[indices[b]])]
    assert lacking, "no resample without the rare class: the zero-division path went untested"
    for b in range(100):
        slow = classification_metrics(
            pd.Series(true[indices[b]]), pd.Series(pred[indices[b]]), CLASSES, COST
        )
        for metric in HEADLINE:
            assert fast.loc[b, metric] == pytest.approx(slow[metric]), (b, metric)


def test_confusion_scores_by_hand() -> None:
    # true Benign: 3 right, 1 called Early; true Early: 2 right; nothing else.
    confusion = np.zeros((1, 4, 4), dtype=int)
    confusion[0, 0, 0], confusion[0, 0, 1], confusion[0, 1, 1] = 3, 1, 2
    scores = confusion_scores(confusion)
    f1_benign, f1_early = 2 * 3 / (2 * 3 + 1), 2 * 2 / (2 * 2 + 1)  # 6/7, 4/5
    assert scores["accuracy"][0] == pytest.approx(5 / 6)
    assert scores["f1_macro"][0] == pytest.approx((f1_benign + f1_early) / 4)
    assert scores["f1_weighted"][0] == pytest.approx((4 * f1_benign + 2 * f1_early) / 6)


def test_stratified_resamples_keep_the_class_sizes() -> None:
    codes = np.array([0] * 5 + [1] * 20 + [2] * 3)
    indices = resample_indices(50, codes, np.random.default_rng(0), stratify=True)
    for row in indices:
        assert np.bincount(codes[row], minlength=3).tolist() == [5, 20, 3]


# --- paired cost difference --------------------------------------------------------------------


def test_identical_models_have_no_cost_difference() -> None:
    predictions = noisy_predictions(80, 0.6, seed=8)
    result = paired_bootstrap_cost_difference(
        predictions["true"], predictions["pred"], predictions["pred"], CLASSES, COST, 300
    )
    # an unpaired bootstrap would scatter around 0; the paired one cannot
    assert (result.ci_low, result.ci_high, result.total_difference) == (0.0, 0.0, 0.0)
    assert result.p_value == 1.0


def test_cost_difference_by_hand() -> None:
    # 100 Pre images; A is always right, B calls 20 of them Pro (cost 10 each).
    true = ["Pre"] * 100
    pred_b = ["Pro"] * 20 + ["Pre"] * 80
    result = paired_bootstrap_cost_difference(true, true, pred_b, CLASSES, COST, 999, seed=1)
    assert result.average_difference == pytest.approx(-2.0)
    assert result.total_difference == pytest.approx(-200.0)
    assert result.ci_low < -2.0 < result.ci_high < 0.0
    assert result.bootstrap_mean == pytest.approx(-2.0, abs=0.1)
    assert result.total_ci_low == pytest.approx(100 * result.ci_low)
    assert result.total_ci_high == pytest.approx(100 * result.ci_high)
    # every resample has d < 0 (P(no B error drawn) = 0.8^100), so p = 2 * 1 / (999 + 1)
    assert result.p_value == pytest.approx(2 / 1000)


# --- all pairs ---------------------------------------------------------------------------------


def test_holm_adjustment_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm_adjust([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.6, 0.9]).tolist() == pytest.approx([1.0, 1.0])


def test_pairwise_comparisons() -> None:
    good = noisy_predictions(400, 0.95, seed=9)
    rng = np.random.default_rng(10)
    bad = good.assign(pred=np.where(rng.random(400) < 0.4, "Pro", good["true"]))
    same = good.copy()
    table = pairwise_comparisons(
        {"good": good, "bad": bad, "same": same}, COST, CLASSES, n_resamples=500
    )
    assert table[["model_a", "model_b"]].values.tolist() == [
        ["good", "bad"],
        ["good", "same"],
        ["bad", "same"],
    ]
    row = table.set_index(["model_a", "model_b"])
    accuracy = {
        k: float((t["pred"] == t["true"]).mean()) for k, t in [("good", good), ("bad", bad)]
    }
    assert row.loc[("good", "bad"), "accuracy_difference"] == pytest.approx(
        accuracy["good"] - accuracy["bad"]
    )
    assert row.loc[("good", "same"), "mcnemar_p"] == 1.0
    assert bool(row.loc[("good", "bad"), "significant"])
    assert bool(row.loc[("good", "bad"), "cost_significant"])
    assert row.loc[("good", "bad"), "cost_ci_high"] < 0  # good is cheaper
    assert not bool(row.loc[("good", "same"), "significant"])
    assert table["mcnemar_p_holm"].tolist() == pytest.approx(
        holm_adjust(table["mcnemar_p"]).tolist()
    )
    assert (table["significant"] == (table["mcnemar_p_holm"] < 0.05)).all()


def test_pairwise_comparisons_refuse_different_test_sets() -> None:
    a = noisy_predictions(20, 0.9, seed=1)
    with pytest.raises(ValueError, match="same images"):
        pairwise_comparisons({"a": a, "b": a.iloc[:10]}, COST, CLASSES, n_resamples=10)


def test_pairwise_comparisons_of_one_model_keep_their_columns(tmp_path) -> None:
    from leukbench.smk import read_tsv, write_tsv

    one = pd.DataFrame({"id": ["a", "b"], "split": "test", "true": ["x", "y"], "pred": ["x", "x"]})
    table = pairwise_comparisons({"only": one}, [[0, 1], [1, 0]], ["x", "y"], n_resamples=10)
    assert table.empty and {"model_a", "mcnemar_p_holm", "significant"} <= set(table.columns)
    write_tsv(table, tmp_path / "c.tsv")
    assert read_tsv(tmp_path / "c.tsv").empty
