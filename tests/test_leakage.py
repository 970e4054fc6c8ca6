"""Duplicates across splits, proxy slide groups, the proxy-group split and the optimism table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import smooth_rgb

from leukbench.duplicates import PAIR_COLUMNS
from leukbench.features import FeatureSettings, image_features
from leukbench.leakage import (
    colour_columns,
    colour_statistics,
    cross_split_duplicates,
    optimism_table,
    proxy_group_split,
    proxy_groups,
)

CHANNELS = "rgbhsv"
RATIOS = {"train": 0.6, "val": 0.2, "test": 0.2}


# --- duplicates across splits ------------------------------------------------------------------


def test_cross_split_duplicates_on_a_constructed_case() -> None:
    splits = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "label": "Pre",
            "group": "",
            "split": ["train", "test", "train", "val", "val"],
            "protocol": "image",
        }
    )
    pairs = pd.DataFrame(
        [
            ("a", "b", "Pre", "Pre", "exact", 0, False),  # train - test: leaks
            ("a", "c", "Pre", "Pre", "near", 3, False),  # both train: fine
            ("b", "d", "Pre", "Pre", "near", 5, False),  # test - val: leaks
            ("d", "e", "Pre", "Pre", "near", 1, False),  # both val: fine
            ("e", "x", "Pre", "Pre", "exact", 0, False),  # x was excluded: cannot leak
            ("c", "e", "Pre", "Pre", "near", 2, False),  # train - val: leaks
        ],
        columns=PAIR_COLUMNS,
    )
    found = cross_split_duplicates(pairs, splits)
    assert found.pairs[["id_a", "id_b", "split_a", "split_b"]].values.tolist() == [
        ["a", "b", "train", "test"],
        ["b", "d", "test", "val"],
        ["c", "e", "train", "val"],
    ]
    counts = found.counts.set_index(["split_a", "split_b"])
    # split pairs are counted in train, val, test order whatever the pair's id order
    assert counts.to_dict("index") == {
        ("train", "test"): {"n_exact": 1, "n_near": 0, "n_pairs": 1},
        ("train", "val"): {"n_exact": 0, "n_near": 1, "n_pairs": 1},
        ("val", "test"): {"n_exact": 0, "n_near": 1, "n_pairs": 1},
    }


def test_no_cross_split_duplicates_gives_empty_tables() -> None:
    splits = pd.DataFrame({"id": ["a", "b"], "split": ["train", "train"]})
    pairs = pd.DataFrame([("a", "b", "X", "X", "exact", 0, False)], columns=PAIR_COLUMNS)
    found = cross_split_duplicates(pairs, splits)
    assert found.pairs.empty and found.counts.empty


# --- colour columns ----------------------------------------------------------------------------


def features_table(n: int) -> pd.DataFrame:
    """A real features.py table of n small images, the last one failed."""
    settings = FeatureSettings(size=32, hist_bins=4)
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:24, 8:24] = True
    rows = [
        {"id": f"img{i}", "error": ""} | image_features(smooth_rgb(i, 32), mask, settings)
        for i in range(n - 1)
    ]
    rows.append({"id": f"img{n - 1}", "error": "OSError: truncated"})
    return pd.DataFrame(rows)


def test_colour_columns_pick_the_channel_means_and_spreads() -> None:
    features = features_table(3)
    assert colour_columns(features) == [f"{c}_{s}" for c in CHANNELS for s in ("mean", "sd")]
    with_hist = colour_columns(features, histograms=True)
    assert len(with_hist) == 12 + 6 * 4
    assert {"r_hist00", "v_hist03"} <= set(with_hist)
    assert not any(c.startswith(("gray_", "cell_", "glcm")) for c in with_hist)
    with pytest.raises(ValueError, match="s_mean"):
        colour_columns(features.drop(columns="s_mean"))


def test_colour_statistics_leave_out_failed_images() -> None:
    table = colour_statistics(features_table(4))
    assert table["id"].tolist() == ["img0", "img1", "img2"]
    assert table.columns[0] == "id" and table.shape[1] == 13
    assert not table.isna().any().any()


# --- proxy groups and their split --------------------------------------------------------------


def stained(n_per_slide: int, n_slides: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Colour statistics of images from well-separated 'slides', and each image's slide."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(n_slides, 12)) * 5
    slide = np.repeat(np.arange(n_slides), n_per_slide)
    values = centres[slide] + rng.normal(0, 0.05, size=(len(slide), 12))
    columns = [f"{c}_{s}" for c in CHANNELS for s in ("mean", "sd")]
    table = pd.DataFrame(values, columns=columns)
    table.insert(0, "id", [f"img{i:03d}" for i in range(len(slide))])
    return table, slide


def test_proxy_groups_recover_well_separated_slides() -> None:
    colours, slide = stained(n_per_slide=10, n_slides=6, seed=0)
    groups = proxy_groups(colours, n_groups=6, seed=1)
    assert groups.index.tolist() == colours["id"].tolist()
    assert groups.nunique() == 6
    # one proxy group per slide and one slide per proxy group
    pairs = pd.DataFrame({"slide": slide, "group": groups.to_numpy()}).drop_duplicates()
    assert len(pairs) == 6
    pd.testing.assert_series_equal(groups, proxy_groups(colours, 6, seed=1))
    assert set(groups) == {f"proxy{k}" for k in range(6)}


def test_proxy_groups_refuse_impossible_group_counts() -> None:
    colours, _ = stained(2, 2, seed=0)
    with pytest.raises(ValueError, match="n_groups"):
        proxy_groups(colours, 5, seed=0)


def test_proxy_group_split_keeps_every_group_in_one_split() -> None:
    colours, slide = stained(n_per_slide=8, n_slides=20, seed=2)
    table = pd.DataFrame({"id": colours["id"], "label": np.where(slide % 2, "ALL", "Healthy")})
    groups = proxy_groups(colours, n_groups=20, seed=0)
    split = proxy_group_split(table, groups, RATIOS, seed=3)
    assert sorted(split["id"]) == sorted(table["id"])
    assert (split.groupby("group")["split"].nunique() == 1).all()
    assert set(split["split"]) == {"train", "val", "test"}
    assert (split["protocol"] == "proxy_group").all()
    assert (split["group"] == split["id"].map(groups)).all()
    # whole groups of 8: the train share is still near its 60 %
    assert 0.45 <= (split["split"] == "train").mean() <= 0.75


def test_proxy_group_split_needs_a_group_for_every_image() -> None:
    colours, _ = stained(4, 3, seed=0)
    table = pd.DataFrame({"id": colours["id"], "label": "ALL"})
    groups = proxy_groups(colours, 3, seed=0).iloc[1:]
    with pytest.raises(ValueError, match="1 images have no proxy group"):
        proxy_group_split(table, groups, RATIOS, seed=0)


# --- optimism ----------------------------------------------------------------------------------


def tidy_rows(model_values: dict[str, float], split: str = "test") -> pd.DataFrame:
    rows = [
        {
            "dataset": "d",
            "variant": "Original",
            "model": model,
            "split": split,
            "metric": m,
            "value": v,
        }
        for model, value in model_values.items()
        for m, v in (("accuracy", value), ("total_cost", 100.0))
    ]
    return pd.DataFrame(rows)


def test_optimism_table_by_hand() -> None:
    image = pd.concat(
        [tidy_rows({"svm": 0.95, "xgboost": 0.97}), tidy_rows({"svm": 1.0}, split="train")]
    )
    proxy = tidy_rows({"svm": 0.80, "xgboost": 0.91})
    table = optimism_table(image, proxy).set_index("model")
    assert list(table.columns) == ["dataset", "variant", "image_level", "proxy_group", "gap"]
    assert table.loc["svm", ["image_level", "proxy_group"]].tolist() == [0.95, 0.80]
    assert table.loc["svm", "gap"] == pytest.approx(0.15)
    assert table.loc["xgboost", "gap"] == pytest.approx(0.06)
