"""Repeated evaluation: deep and classic models retrained on re-splits, scored by one evaluator."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_deep_train import ARCH, make_spec, standin_architectures, synthetic_tables

from leukbench.deep.cache import compute_feature_cache, load_feature_cache, train_views
from leukbench.deep.repeats import resplit_deep
from leukbench.metrics import HEADLINE, evaluate
from leukbench.repeats import repeat_metrics, resplit_classic
from leukbench.splits import resplit

CLASSES = ["a", "b", "c"]
RATIOS = {"train": 0.5, "val": 0.25, "test": 0.25}


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = standin_architectures()
    monkeypatch.setitem(sys.modules, ARCH, module)
    return module


@pytest.fixture
def tables(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    images, splits = synthetic_tables(tmp_path / "img", CLASSES, n_per_class=8)
    # The columns of a task's splits.tsv: no patient ids, an image-level split.
    return images, splits.assign(group="", protocol="image")


def moved_into_train(splits: pd.DataFrame, split_seed: int) -> set[str]:
    """Images that the original split holds out and the re-split trains on."""
    again = resplit(splits, RATIOS, split_seed).set_index("id")["split"]
    held_out = splits.loc[splits["split"] != "train", "id"]
    return {i for i in held_out if again[i] == "train"}


def test_cached_transfer_model_trains_on_any_resplit_of_an_every_view_cache(
    standins: types.ModuleType, tables: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    images, splits = tables
    spec = make_spec("transfer", augmentation="flip_rotate8", epochs=2)
    table = splits.merge(images[["id", "path"]], on="id")
    cache_path = tmp_path / "every_view.npz"
    summary = compute_feature_cache(table, spec, 3, cache_path, every_view=True)
    assert summary["rows"] == len(table) * train_views(spec) == 24 * 8
    assert moved_into_train(splits, 1) and moved_into_train(splits, 2)
    stamp = cache_path.stat().st_mtime_ns
    first, info = resplit_deep(images, splits, CLASSES, spec, RATIOS, 1, 3, cache_path=cache_path)
    again, _ = resplit_deep(images, splits, CLASSES, spec, RATIOS, 1, 3, cache_path=cache_path)
    other, _ = resplit_deep(images, splits, CLASSES, spec, RATIOS, 2, 3, cache_path=cache_path)
    assert cache_path.stat().st_mtime_ns == stamp  # read, never recomputed
    assert info["cached"] is True and info["split_seed"] == 1
    expected = resplit(splits, RATIOS, 1).set_index("id")["split"]
    assert first.set_index("id")["split"].to_dict() == expected.to_dict()
    assert set(first["id"]) == set(splits["id"])
    pd.testing.assert_frame_equal(first, again)
    assert not first.set_index("id")["split"].equals(other.set_index("id")["split"])
    for frame in (first, other):
        probs = frame.filter(like="prob_").to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_a_train_split_cache_cannot_serve_a_resplit(
    standins: types.ModuleType, tables: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    images, splits = tables
    spec = make_spec("transfer", augmentation="flip_rotate8")
    table = splits.merge(images[["id", "path"]], on="id")
    cache_path = tmp_path / "train_views_only.npz"
    compute_feature_cache(table, spec, 3, cache_path)
    assert len(load_feature_cache(cache_path).features) == 12 * 8 + 12
    with pytest.raises(ValueError, match=r"has no view \d for \d+ images"):
        resplit_deep(images, splits, CLASSES, spec, RATIOS, 1, 3, cache_path=cache_path)


def test_streamed_cnn_retrains_from_the_same_start_on_each_resplit(
    standins: types.ModuleType, tables: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    images, splits = tables
    spec = make_spec("cnn", epochs=1)
    first, info = resplit_deep(images, splits, CLASSES, spec, RATIOS, 4, 7)
    again, _ = resplit_deep(images, splits, CLASSES, spec, RATIOS, 4, 7)
    assert info["cached"] is False and info["split_sizes"] == {"train": 12, "val": 6, "test": 6}
    pd.testing.assert_frame_equal(first, again)
    expected = resplit(splits, RATIOS, 4).set_index("id")["split"]
    assert first.set_index("id")["split"].to_dict() == expected.to_dict()


def test_classic_resplit_is_deterministic_and_follows_the_resplit() -> None:
    rng = np.random.default_rng(0)
    ids = [f"{c}/{n:02d}" for c in CLASSES for n in range(20)]
    labels = [i.split("/")[0] for i in ids]
    centres = {"a": 0.0, "b": 2.0, "c": 4.0}
    features = pd.DataFrame(
        {
            "id": ids,
            "error": "",
            "f1": [centres[y] + rng.normal(0, 0.8) for y in labels],
            "f2": rng.normal(0, 1, len(ids)),
        }
    )
    splits = pd.DataFrame(
        {"id": ids, "label": labels, "group": "", "split": "train", "protocol": "image"}
    )
    spec = {"family": "svm", "grid": {"kernel": ["linear"], "C": [1.0]}}
    first, info = resplit_classic(features, splits, CLASSES, spec, RATIOS, 5, 1)
    again, _ = resplit_classic(features, splits, CLASSES, spec, RATIOS, 5, 1)
    pd.testing.assert_frame_equal(first, again)
    assert info["split_seed"] == 5 and info["train_seconds"] >= 0
    expected = resplit(splits, RATIOS, 5).set_index("id")["split"]
    assert first.set_index("id")["split"].to_dict() == expected.to_dict()


def test_repeat_metrics_scores_every_seed_with_the_shared_evaluator() -> None:
    rng = np.random.default_rng(1)
    tables = {}
    for seed in (1, 2, 3):
        true = rng.integers(0, 3, 60)
        pred = np.where(rng.random(60) < 0.8, true, (true + 1) % 3)
        probs = np.full((60, 3), 0.1)
        probs[np.arange(60), pred] = 0.8
        tables[seed] = pd.DataFrame(
            {
                "id": [f"i{k}" for k in range(60)],
                "split": np.where(np.arange(60) < 40, "train", "test"),
                "true": np.array(CLASSES)[true],
                "pred": np.array(CLASSES)[pred],
                **{f"prob_{c}": probs[:, k] for k, c in enumerate(CLASSES)},
            }
        )
    cost = [[0, 1, 5], [1, 0, 1], [5, 1, 0]]
    out = repeat_metrics(tables, CLASSES, cost)
    assert list(out.columns) == ["split_seed", "metric", "value"]
    assert len(out) == 3 * len(HEADLINE)
    for seed, table in tables.items():
        expected = evaluate(table, CLASSES, cost)["test"]
        got = out[out["split_seed"] == seed].set_index("metric")["value"]
        for metric in HEADLINE:
            assert got[metric] == pytest.approx(expected[metric]), (seed, metric)
        test = table[table["split"] == "test"]
        assert got["accuracy"] == pytest.approx((test["true"] == test["pred"]).mean())
    # Another cost matrix re-scores the costs and leaves the accuracies alone.
    heavier = repeat_metrics(tables, CLASSES, [[0, 9, 9], [9, 0, 9], [9, 9, 0]])
    accuracy = out["metric"] == "accuracy"
    pd.testing.assert_series_equal(heavier.loc[accuracy, "value"], out.loc[accuracy, "value"])
    assert not heavier.equals(out)
