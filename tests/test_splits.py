"""Seeded, stratified (and group-aware) train/val/test splits, and balanced subsampling."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from leukbench.splits import SPLITS, make_splits, subsample

RATIOS = {"train": 0.64, "val": 0.20, "test": 0.16}
# Kaggle ALL class sizes, divided by four
CLASS_SIZES = {"Benign": 126, "Early": 246, "Pre": 241, "Pro": 201}


def image_table(sizes: dict[str, int] = CLASS_SIZES, group: str = "") -> pd.DataFrame:
    rows = [
        {"id": f"{cls}/{cls}-{n:04d}", "label": cls, "group": group}
        for cls, count in sizes.items()
        for n in range(count)
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # input order must not matter


def grouped_table(n_groups: int = 60, seed: int = 0) -> pd.DataFrame:
    """Patients of 3 to 12 images, each patient mostly of one class (as in real cohorts), with
    classes of unequal size."""
    rng = np.random.default_rng(seed)
    classes = list(CLASS_SIZES)
    rows = []
    for g in range(n_groups):
        main = classes[int(rng.choice(len(classes), p=[0.15, 0.3, 0.3, 0.25]))]
        for n in range(int(rng.integers(3, 13))):
            label = main if rng.random() < 0.9 else classes[int(rng.integers(len(classes)))]
            rows.append({"id": f"P{g:03d}_{n:02d}", "label": label, "group": f"P{g:03d}"})
    return pd.DataFrame(rows)


def split_sets(table: pd.DataFrame) -> dict[str, set[str]]:
    return {s: set(table.loc[table["split"] == s, "id"]) for s in SPLITS}


def test_same_seed_same_split_other_seed_other_split() -> None:
    table = image_table()
    first = make_splits(table, RATIOS, seed=123)
    again = make_splits(table.sample(frac=1.0, random_state=5), RATIOS, seed=123)
    other = make_splits(table, RATIOS, seed=124)
    pd.testing.assert_frame_equal(first, again)
    assert split_sets(first) != split_sets(other)
    assert set(first.columns) == {"id", "label", "group", "split", "protocol"}
    assert (first["protocol"] == "image").all()
    assert first["id"].is_monotonic_increasing


def test_every_id_in_exactly_one_split() -> None:
    table = image_table()
    splits = make_splits(table, RATIOS, seed=1)
    sets = split_sets(splits)
    assert set(splits["split"]) == set(SPLITS)
    assert sets["train"].isdisjoint(sets["val"])
    assert sets["train"].isdisjoint(sets["test"])
    assert sets["val"].isdisjoint(sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(table["id"])
    assert len(splits) == len(table)


def test_ratios_and_stratification() -> None:
    table = image_table()
    splits = make_splits(table, RATIOS, seed=123)
    n = len(table)
    shares = splits["split"].value_counts() / n
    for name, ratio in RATIOS.items():
        assert shares[name] == pytest.approx(ratio, abs=0.01), name
    overall = table["label"].value_counts(normalize=True)
    for name in SPLITS:
        within = splits.loc[splits["split"] == name, "label"].value_counts(normalize=True)
        for cls in CLASS_SIZES:
            assert within[cls] == pytest.approx(overall[cls], abs=0.01), (name, cls)


def test_kaggle_size_test_split_is_16_percent() -> None:
    """16 % of 3,256 images is 521 (study 003's R split, seed 123, had 518)."""
    sizes = {"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804}
    splits = make_splits(image_table(sizes), RATIOS, seed=123)
    assert (splits["split"] == "test").sum() == pytest.approx(0.16 * 3256, abs=3)


def test_ratios_need_not_sum_to_one() -> None:
    table = image_table()
    scaled = make_splits(table, {"train": 64, "val": 20, "test": 16}, seed=7)
    plain = make_splits(table, RATIOS, seed=7)
    pd.testing.assert_frame_equal(scaled, plain)


def test_group_aware_split_keeps_each_group_in_one_split() -> None:
    table = grouped_table()
    splits = make_splits(table, RATIOS, seed=123)
    assert (splits["protocol"] == "group").all()
    per_group = splits.groupby("group")["split"].nunique()
    assert (per_group == 1).all()
    assert set(splits["split"]) == set(SPLITS)


def test_group_aware_split_keeps_sizes_and_class_shares_reasonable() -> None:
    table = grouped_table(n_groups=80)
    splits = make_splits(table, RATIOS, seed=3)
    n = len(table)
    shares = splits["split"].value_counts() / n
    for name, ratio in RATIOS.items():
        assert shares[name] == pytest.approx(ratio, abs=0.03), name
    overall = table["label"].value_counts(normalize=True)
    for name in SPLITS:
        within = splits.loc[splits["split"] == name, "label"].value_counts(normalize=True)
        for cls in CLASS_SIZES:
            assert within.get(cls, 0.0) == pytest.approx(overall[cls], abs=0.05), (name, cls)


def test_group_aware_split_is_deterministic_per_seed() -> None:
    table = grouped_table()
    first = make_splits(table, RATIOS, seed=11)
    pd.testing.assert_frame_equal(first, make_splits(table.iloc[::-1], RATIOS, seed=11))
    groups = {s: set(first.loc[first["split"] == s, "group"]) for s in SPLITS}
    other = make_splits(table, RATIOS, seed=12)
    assert groups != {s: set(other.loc[other["split"] == s, "group"]) for s in SPLITS}


def test_missing_or_unique_groups_fall_back_to_image_level() -> None:
    table = grouped_table()
    table.loc[table.index[0], "group"] = ""
    assert (make_splits(table, RATIOS, seed=1)["protocol"] == "image").all()
    table["group"] = None
    assert (make_splits(table, RATIOS, seed=1)["protocol"] == "image").all()
    unique = image_table()
    unique["group"] = unique["id"]  # one image per group is no grouping at all
    assert (make_splits(unique, RATIOS, seed=1)["protocol"] == "image").all()


# --- subsample -----------------------------------------------------------------------------------


def test_subsample_n_per_class_is_balanced_and_seeded() -> None:
    table = image_table()
    kept, rest = subsample(table, list(CLASS_SIZES), seed=9, n_per_class=50)
    assert (kept["label"].value_counts() == 50).all()
    assert len(kept) == 200
    assert set(kept["id"]).isdisjoint(rest["id"])
    assert len(kept) + len(rest) == len(table)
    again, _ = subsample(table.iloc[::-1], list(CLASS_SIZES), seed=9, n_per_class=50)
    pd.testing.assert_frame_equal(kept, again)
    other, _ = subsample(table, list(CLASS_SIZES), seed=10, n_per_class=50)
    assert set(other["id"]) != set(kept["id"])


def test_subsample_n_total_is_shared_equally() -> None:
    kept, _ = subsample(image_table(), list(CLASS_SIZES), seed=1, n_total=400)
    assert kept["label"].value_counts().to_dict() == dict.fromkeys(CLASS_SIZES, 100)


def test_subsample_class_with_too_few_takes_all_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    table = image_table({"Benign": 30, "Early": 200, "Pre": 200, "Pro": 200})
    with caplog.at_level(logging.WARNING, logger="leukbench.splits"):
        kept, _ = subsample(table, list(CLASS_SIZES), seed=1, n_per_class=100)
    counts = kept["label"].value_counts()
    assert counts["Benign"] == 30
    assert (counts.drop("Benign") == 100).all()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Benign" in warnings[0].getMessage()
    assert "30" in warnings[0].getMessage() and "100" in warnings[0].getMessage()


def test_subsample_without_a_target_keeps_everything() -> None:
    table = image_table()
    kept, rest = subsample(table, list(CLASS_SIZES), seed=1)
    assert len(kept) == len(table) and rest.empty
    assert kept["id"].is_monotonic_increasing
