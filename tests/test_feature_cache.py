"""The frozen-backbone feature cache: keys, contents, recomputation, training on it."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
from test_deep_train import (
    ARCH,
    HAS_ARCHITECTURES,
    make_spec,
    model_probabilities,
    standin_architectures,
    standin_backbone,
    synthetic_tables,
)

from leukbench.deep.cache import (
    cache_key,
    compute_feature_cache,
    load_feature_cache,
    view_seed,
)
from leukbench.deep.data import augment, dihedral_views
from leukbench.deep.train import train_deep
from leukbench.images import load_rgb

SIDE = 32
CLASSES = ["a", "b", "c"]
# Cached and recomputed features come from the same float32 graph on the same CPU, but from
# batches of different composition and size, for which oneDNN may pick other blockings and so
# other summation orders. float32 rounding is 6e-8 relative; a feature here sums ~3*3*3 products
# and a mean over ~900 positions, so differences stay orders of magnitude below 1e-5 relative.
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = standin_architectures()
    monkeypatch.setitem(sys.modules, ARCH, module)
    return module


def transfer_spec(**overrides: Any) -> dict[str, Any]:
    return make_spec("transfer", **overrides)


def table_with_splits(root: Path, n_per_class: int = 4) -> pd.DataFrame:
    images, splits = synthetic_tables(root, CLASSES, n_per_class=n_per_class)
    return splits.merge(images[["id", "path"]], on="id")


def backbone_features(spec: dict[str, Any], images: np.ndarray, seed: int) -> np.ndarray:
    keras.utils.set_random_seed(seed)
    return np.asarray(standin_backbone(spec)(images.astype(np.float32), training=False))


# --- keys -------------------------------------------------------------------------------------


def test_cache_key_is_short_stable_and_tracks_what_shapes_the_features(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    base = transfer_spec(augmentation="flip_rotate8")
    key = cache_key(base, seed=1)
    assert len(key) == 16 and int(key, 16) >= 0
    assert cache_key(dict(base), seed=1) == key
    # Training settings and the head's layers do not change the features.
    for same in ({"learning_rate": 1.0}, {"epochs": 99}, {"batch_size": 3}, {"patience": 1}):
        assert cache_key(base | same, seed=1) == key
    # Input size, views, backbone, dtype and (random weights) the seed do.
    for other in (
        {"image_size": 64},
        {"augmentation": "none"},
        {"augmentation": "reference_strong"},
        {"backbone": "vgg16"},
        {"cache_dtype": "float16"},
    ):
        assert cache_key(base | other, seed=1) != key, other
    assert cache_key(base, seed=2) != key
    random_views = base | {"augmentation": "resnet50_study"}
    assert cache_key(random_views | {"cache_views": 2}, 1) != cache_key(random_views, 1)


def test_cache_key_identifies_weights_files_by_content(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.h5"
    weights.write_bytes(b"first")
    spec = transfer_spec(weights=str(weights))
    first = cache_key(spec, seed=1)
    assert cache_key(spec, seed=2) == first  # fixed weights, fixed views: the seed is moot
    weights.write_bytes(b"second")
    assert cache_key(spec, seed=1) != first
    with pytest.raises(ValueError, match="not 'imagenet', null, or an existing file"):
        cache_key(transfer_spec(weights=str(tmp_path / "absent.h5")), seed=1)


def test_cache_key_of_imagenet_backbones_uses_the_published_weights_file() -> None:
    if not HAS_ARCHITECTURES:
        pytest.skip("leukbench.deep.architectures is not there yet")
    arch = importlib.import_module(ARCH)
    spec = make_spec("transfer", backbone="densenet201", weights="imagenet", image_size=224)
    spec |= {"augmentation": "flip_rotate8", "head": {"pooling": "avg", "dense": [128]}}
    key = cache_key(spec, seed=1)
    assert cache_key(spec, seed=2) == key  # pretrained weights and fixed views: seed-free
    assert cache_key(spec | {"head": {"pooling": "avg", "dense": [64]}}, 1) == key
    assert cache_key(spec | {"head": {"pooling": "max", "dense": [128]}}, 1) != key
    assert arch.KERAS_WEIGHTS["densenet201"]["hash"]  # what the key is made of


# --- contents ---------------------------------------------------------------------------------


def test_flip_rotate8_cache_holds_all_views_of_train_images_equal_to_recomputed(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    table = table_with_splits(tmp_path / "img")
    spec = transfer_spec(augmentation="flip_rotate8")
    summary = compute_feature_cache(table, spec, seed=4, out_path=tmp_path / "c.npz", batch_size=5)
    cache = load_feature_cache(tmp_path / "c.npz")
    n_train = int((table["split"] == "train").sum())
    assert summary["rows"] == len(cache.ids) == 8 * n_train + (len(table) - n_train)
    assert cache.key == cache_key(spec, 4) == summary["key"]
    assert cache.features.dtype == np.float32 and cache.feature_shape == (6,)
    assert isinstance(cache.features, np.memmap)  # read lazily from the uncompressed zip
    in_memory = load_feature_cache(tmp_path / "c.npz", mmap=False).features
    assert not isinstance(in_memory, np.memmap)
    np.testing.assert_array_equal(in_memory, cache.features)
    for image_id, split in zip(table["id"], table["split"], strict=True):
        views = sorted(cache.views[cache.ids == image_id])
        assert views == (list(range(8)) if split == "train" else [0])
    # Every stored row equals the backbone run afresh on that view.
    for row in table.itertuples():
        views = dihedral_views(load_rgb(row.path, (SIDE, SIDE))).numpy()
        n_views = 8 if row.split == "train" else 1
        expected = backbone_features(spec, views[:n_views], seed=4)
        got = np.stack([cache.features[cache.rows([row.id], v)[0]] for v in range(n_views)])
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_random_policy_caches_seeded_views_that_can_be_recomputed(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    table = table_with_splits(tmp_path / "img", n_per_class=2)
    spec = transfer_spec(augmentation="reference_strong", cache_views=2)
    compute_feature_cache(table, spec, seed=9, out_path=tmp_path / "c.npz")
    cache = load_feature_cache(tmp_path / "c.npz")
    train = table[table["split"] == "train"]
    assert len(cache.ids) == 3 * len(train) + (len(table) - len(train))
    for row in train.itertuples():
        image = load_rgb(row.path, (SIDE, SIDE))
        views = [image.astype(np.float32)]
        views += [augment(image, spec["augmentation"], view_seed(9, row.id, v)) for v in (1, 2)]
        expected = backbone_features(spec, np.stack(views), seed=9)
        got = cache.features[[cache.rows([row.id], v)[0] for v in range(3)]]
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
        assert not np.allclose(got[1], got[2])  # two different draws


def test_float16_cache_is_half_precision_and_close(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    table = table_with_splits(tmp_path / "img", n_per_class=2)
    spec = transfer_spec()
    compute_feature_cache(table, spec, 1, tmp_path / "f32.npz")
    compute_feature_cache(table, spec | {"cache_dtype": "float16"}, 1, tmp_path / "f16.npz")
    full = load_feature_cache(tmp_path / "f32.npz").features
    half = load_feature_cache(tmp_path / "f16.npz").features
    assert half.dtype == np.float16
    # float16 keeps 11 significant bits: relative error at most 2**-11.
    np.testing.assert_allclose(half.astype(np.float32), full, rtol=2**-11, atol=1e-6)


def test_only_a_frozen_transfer_backbone_is_cached(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    table = table_with_splits(tmp_path / "img", n_per_class=2)
    with pytest.raises(ValueError, match="trainable_layers 0"):
        compute_feature_cache(table, transfer_spec(trainable_layers=2), 1, tmp_path / "c.npz")
    images, splits = synthetic_tables(tmp_path / "img2", CLASSES, n_per_class=4)
    with pytest.raises(ValueError, match="family 'transfer'"):
        train_deep(images, splits, CLASSES, make_spec("cnn"), 1, cache_path=tmp_path / "c.npz")


# --- training on the cache --------------------------------------------------------------------


def test_head_trained_on_the_cache_predicts_like_the_assembled_model(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    images, splits = synthetic_tables(tmp_path / "img", CLASSES, n_per_class=8)
    spec = transfer_spec(augmentation="flip_rotate8", epochs=2)
    cache_path = tmp_path / "cache" / "features.npz"
    model, predictions, info, history = train_deep(
        images, splits, CLASSES, spec, seed=3, cache_path=cache_path
    )
    assert cache_path.is_file() and info["cached"] is True
    assert info["cache_key"] == cache_key(spec, 3) and info["cache_rows"] == 12 * 8 + 12
    assert len(history) == 2
    # The model to save: backbone + trained head, run on the images themselves.
    assert {layer.name for layer in model.layers} >= {"backbone", "head"}
    table = splits.merge(images[["id", "path"]], on="id")
    full = model_probabilities(model, table, len(CLASSES))
    np.testing.assert_allclose(predictions.filter(like="prob_").to_numpy(), full, atol=1e-5)
    # A second model on the same cache reuses the file (and gets the same result).
    stamp = cache_path.stat().st_mtime_ns
    _, again, _, _ = train_deep(images, splits, CLASSES, spec, seed=3, cache_path=cache_path)
    assert cache_path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.filter(like="prob_"), predictions.filter(like="prob_"))


def test_a_cache_for_other_settings_or_images_is_refused(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    images, splits = synthetic_tables(tmp_path / "img", CLASSES, n_per_class=4)
    table = splits.merge(images[["id", "path"]], on="id")
    spec = transfer_spec()
    compute_feature_cache(table, spec | {"image_size": 24}, 1, tmp_path / "other.npz")
    with pytest.raises(ValueError, match="is not this model's"):
        train_deep(images, splits, CLASSES, spec, 1, cache_path=tmp_path / "other.npz")
    compute_feature_cache(table.iloc[:-2], spec, 1, tmp_path / "fewer.npz")
    with pytest.raises(ValueError, match=r"has no view 0 for 1 images, e.g. \['c/002'\]"):
        train_deep(images, splits, CLASSES, spec, 1, cache_path=tmp_path / "fewer.npz")


def test_missing_cache_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="feature cache not found"):
        load_feature_cache(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable feature cache"):
        load_feature_cache(tmp_path / "junk.npz")
