"""tf.data pipelines: decoding like load_rgb, dihedral views, seeded augmentation, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from leukbench.deep.data import (
    AFFINE_POLICIES,
    affine_matrix,
    apply_affine,
    augment,
    class_weights,
    dihedral_view,
    dihedral_views,
    encode_labels,
    make_dataset,
    targets,
)
from leukbench.images import load_rgb

SIDE = 24
RANDOM_POLICIES = ["flip_rotate8", "resnet50_study", "reference_strong"]


def random_image(seed: int, shape: tuple[int, ...] = (SIDE, SIDE, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_images(root: Path, n: int, size: int = 30) -> pd.DataFrame:
    rows = []
    for i in range(n):
        path = root / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_image(i, (size, size, 3))).save(path)
        rows.append({"id": f"img{i:02d}", "path": str(path), "label": "ab"[i % 2]})
    return pd.DataFrame(rows)


def images_of(dataset: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([batch[0].numpy() for batch in dataset])


# --- dihedral views ---------------------------------------------------------------------------


def test_dihedral_views_are_the_eight_distinct_flips_and_rotations() -> None:
    image = random_image(0, (5, 5, 3))
    views = dihedral_views(image).numpy()
    assert views.shape == (8, 5, 5, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[0], image)
    expected = [np.rot90(image, k) for k in range(4)]
    expected += [np.fliplr(v) for v in expected]
    assert {v.tobytes() for v in views} == {e.tobytes() for e in expected}
    assert len({v.tobytes() for v in views}) == 8
    for k in range(8):
        np.testing.assert_array_equal(dihedral_view(image, k).numpy(), views[k])


# --- augmentation -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", RANDOM_POLICIES)
def test_augmentation_is_deterministic_given_the_seed(policy: str) -> None:
    image = random_image(1)
    first = augment(image, policy, [3, 17]).numpy()
    again = augment(image, policy, [3, 17]).numpy()
    assert first.dtype == np.float32 and first.shape == image.shape
    np.testing.assert_array_equal(first, again)
    assert first.min() >= 0 and first.max() <= 255
    others = [augment(image, policy, [3, s]).numpy() for s in range(6)]
    assert len({o.tobytes() for o in others}) > 1


def test_flip_rotate8_views_are_dihedral_views() -> None:
    image = random_image(2)
    allowed = {v.astype(np.float32).tobytes() for v in dihedral_views(image).numpy()}
    seen = {augment(image, "flip_rotate8", [0, s]).numpy().tobytes() for s in range(40)}
    assert seen <= allowed
    assert len(seen) == 8  # 40 draws of 8 equally likely views: all 8 turn up


def test_no_augmentation_is_the_identity() -> None:
    image = random_image(3)
    np.testing.assert_array_equal(augment(image, "none", [1, 2]).numpy(), image)


def test_affine_transform_identity_and_quarter_turn() -> None:
    image = random_image(4).astype(np.float32)
    same = apply_affine(image, affine_matrix(SIDE, SIDE)).numpy()
    np.testing.assert_allclose(same, image, atol=1e-3)
    turned = apply_affine(image, affine_matrix(SIDE, SIDE, rotation_deg=90.0)).numpy()
    assert any(np.allclose(turned, np.rot90(image, k), atol=1e-2) for k in (1, 3))


def test_published_policy_ranges() -> None:
    """Study 004 and study 003's notebooks, in ImageDataGenerator units."""
    resnet, strong = AFFINE_POLICIES["resnet50_study"], AFFINE_POLICIES["reference_strong"]
    assert (resnet.rotation_deg, resnet.width_shift, resnet.zoom, resnet.shear_deg) == (
        20,
        0.2,
        0.2,
        0,
    )
    assert (strong.rotation_deg, strong.width_shift, strong.height_shift) == (40, 0.4, 0.4)
    assert (strong.shear_deg, strong.zoom, strong.horizontal_flip) == (0.4, 0.4, True)


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown augmentation policy 'cutmix'"):
        augment(random_image(0), "cutmix", [0, 0])


# --- decoding ---------------------------------------------------------------------------------


def test_pipeline_decodes_every_mode_and_size_exactly_like_load_rgb(tmp_path: Path) -> None:
    rgb = random_image(5, (30, 40, 3))
    gray16 = (np.random.default_rng(6).integers(0, 65535, (20, 20))).astype(np.uint16)
    rgba = np.dstack([rgb, np.full((30, 40), 128, np.uint8)])
    files = {
        "rgb.png": Image.fromarray(rgb),
        "gray.png": Image.fromarray(rgb).convert("L"),
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "sixteen.tif": Image.fromarray(gray16),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "big.bmp": Image.fromarray(random_image(7, (64, 50, 3))),
        "exact.png": Image.fromarray(random_image(8)),
    }
    paths = []
    for name, image in files.items():
        image.save(tmp_path / name)
        paths.append(str(tmp_path / name))
    table = pd.DataFrame({"id": list(files), "path": paths, "label": "a"})
    got = images_of(make_dataset(table, ["a", "b"], SIDE, 3))
    assert got.shape == (len(files), SIDE, SIDE, 3) and got.dtype == np.float32
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(got[k], load_rgb(path, (SIDE, SIDE)), err_msg=path)


def test_unreadable_image_error_names_the_file(tmp_path: Path) -> None:
    table = write_images(tmp_path, 3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(Path(table["path"][0]).read_bytes()[:60])
    table.loc[1, "path"] = str(broken)
    with pytest.raises(tf.errors.OpError, match=r"broken\.png"):
        images_of(make_dataset(table, ["a", "b"], SIDE, 2))


# --- streams ----------------------------------------------------------------------------------


def test_evaluation_stream_keeps_order_and_never_augments(tmp_path: Path) -> None:
    table = write_images(tmp_path, 5)
    stream = make_dataset(table, ["a", "b"], SIDE, 2, augmentation="reference_strong")
    got = list(stream)
    images = np.concatenate([b[0].numpy() for b in got])
    labels = np.concatenate([b[1].numpy() for b in got])
    expected = np.stack([load_rgb(p, (SIDE, SIDE)) for p in table["path"]])
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(labels[:, 0], [0, 1, 0, 1, 0])


@pytest.mark.parametrize("policy", ["none", "flip_rotate8", "resnet50_study"])
def test_training_stream_is_seeded_reshuffled_and_epoch_exact(tmp_path: Path, policy: str) -> None:
    table = write_images(tmp_path, 7)

    def stream(seed: int, **kwargs: int) -> tf.data.Dataset:
        return make_dataset(
            table, ["a", "b"], SIDE, 3, training=True, augmentation=policy, seed=seed, **kwargs
        )

    two_epochs = stream(5, epochs=2)
    batches = [len(b[0]) for b in two_epochs]
    assert batches == [3, 3, 1, 3, 3, 1]  # batches never straddle epochs
    first = images_of(two_epochs)
    tf.random.set_seed(1234)  # TF's global seed plays no part
    np.testing.assert_array_equal(images_of(stream(5, epochs=2)), first)
    np.testing.assert_array_equal(images_of(stream(5, first_epoch=1)), first[7:])
    assert not np.array_equal(first[:7], first[7:])  # a fresh order (and views) each epoch
    assert not np.array_equal(images_of(stream(6)), first[:7])
    if policy == "none":  # each image exactly once per epoch
        originals = {load_rgb(p, (SIDE, SIDE)).astype(np.float32).tobytes() for p in table["path"]}
        for epoch in (first[:7], first[7:]):
            assert {image.tobytes() for image in epoch} == originals


def test_sample_weights_follow_the_class(tmp_path: Path) -> None:
    table = write_images(tmp_path, 4)
    stream = make_dataset(table, ["a", "b"], SIDE, 4, weights={0: 0.25, 1: 4.0})
    _, y, w = next(iter(stream))
    np.testing.assert_array_equal(w.numpy(), np.where(y.numpy()[:, 0] == 1, 4.0, 0.25))


# --- labels and weights -----------------------------------------------------------------------


def test_labels_encode_in_class_order_and_unknown_labels_fail() -> None:
    encoded = encode_labels(["Pre", "Benign", "Pro", "Pre"], ["Benign", "Early", "Pre", "Pro"])
    np.testing.assert_array_equal(encoded, [2, 0, 3, 2])
    with pytest.raises(ValueError, match=r"\['Late'\]"):
        encode_labels(["Late", "Pre"], ["Benign", "Early", "Pre", "Pro"])


def test_targets_for_sigmoid_and_softmax_outputs() -> None:
    binary = targets(np.array([0, 1, 1]), 2)
    assert binary.shape == (3, 1) and binary.dtype == np.float32
    multi = targets(np.array([0, 2, 1]), 3)
    assert multi.shape == (3,) and multi.dtype == np.int32


def test_class_weights_are_n_over_k_count() -> None:
    weights = class_weights(np.array([0, 0, 1, 1, 1, 1, 1, 1, 2, 2]), 3)
    assert weights == pytest.approx({0: 10 / 6, 1: 10 / 18, 2: 10 / 6})
    # Weighted, every class carries the same total: n / k.
    assert 2 * weights[0] == pytest.approx(6 * weights[1])
    with pytest.raises(ValueError, match=r"\[1\]"):
        class_weights(np.array([0, 0, 2]), 3)
