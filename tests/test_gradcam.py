"""Grad-CAM (leukbench.deep.gradcam): feature-map search in nested models, the re-wired model,
class-specific heat maps, the hybrid's in-graph mask, and the test-set gallery PNG.

Models are tiny and random (weights=None): a 32 px CNN, 64 px EfficientNet-Lite0 transfer and
hybrid models (64 px gives Lite0 a 2 x 2 map), and a hand-built nested model whose Grad-CAM has a
closed form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import PURPLE, save_image, smear_rgb, smooth_rgb
from PIL import Image

from leukbench.deep.architectures import build_model
from leukbench.deep.gradcam import (
    GALLERY_DPI,
    PANEL_INCHES,
    GradCam,
    find_feature_layer,
    gradcam_gallery,
    overlay_heatmap,
    select_gallery_images,
    tapped_model,
)
from leukbench.predict import write_model_sidecar

LITE0 = {"backbone": "efficientnet_lite0", "weights": None, "trainable_layers": 0}
CNN_SPEC = {"family": "cnn", "architecture": "aml_cnn", "image_size": 32}
TRANSFER_SPEC = {"family": "transfer", "image_size": 64, **LITE0}
HYBRID_SPEC = {"family": "hybrid", "image_size": 64, "hybrid_variant": "pooled", **LITE0}


def seeded_model(spec: dict[str, Any], n_classes: int) -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_model(spec, n_classes)


def random_images(n: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, side, side, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return seeded_model(CNN_SPEC, 3)


@pytest.fixture(scope="module")
def transfer() -> keras.Model:
    return seeded_model(TRANSFER_SPEC, 2)


@pytest.fixture(scope="module")
def hybrid() -> keras.Model:
    return seeded_model(HYBRID_SPEC, 3)


# --- feature map and re-wiring ----------------------------------------------------------------


def test_feature_layer_is_the_last_map_including_nested_backbones(
    cnn: keras.Model, transfer: keras.Model, hybrid: keras.Model
) -> None:
    # aml_cnn: conv3 -> bn3 -> pool3 -> flatten; pooling is skipped for the finer map before it.
    assert find_feature_layer(cnn) == ("bn3",)
    lite0_map = ("backbone", "efficientnet_lite0", "head_relu6")
    assert find_feature_layer(transfer) == lite0_map
    assert find_feature_layer(hybrid) == lite0_map


def test_explicit_layer_by_name_or_path(hybrid: keras.Model) -> None:
    assert find_feature_layer(hybrid, "unet_dec3_conv2") == ("unet_dec3_conv2",)
    assert find_feature_layer(hybrid, "head_bn") == ("backbone", "efficientnet_lite0", "head_bn")
    path = "backbone/efficientnet_lite0/block7_project_bn"
    assert find_feature_layer(hybrid, path) == tuple(path.split("/"))
    with pytest.raises(ValueError, match="exactly once"):
        find_feature_layer(hybrid, "no_such_layer")


@pytest.mark.parametrize("name", ["cnn", "transfer", "hybrid"])
def test_rewired_model_predicts_like_the_model(name: str, request: pytest.FixtureRequest) -> None:
    model: keras.Model = request.getfixturevalue(name)
    explainer = GradCam(model)
    x = random_images(4, int(model.input_shape[1]), seed=1)
    out = explainer.forward(x)
    expected = np.asarray(model.predict(x, verbose=0), np.float64)
    got = out["probabilities"][:, -1:] if expected.shape[1] == 1 else out["probabilities"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The logits computed from the tapped Dense input reproduce the output activation.
    activation = keras.activations.get(explainer.dense.activation)
    np.testing.assert_allclose(
        np.asarray(activation(out["logits"])), expected, rtol=1e-4, atol=1e-6
    )
    # The tapped map is the inner layer's own output. Every parent network here takes the raw
    # image (Lite0 holds its own preprocessing), so a direct sub-model of it computes the same.
    parent: Any = model
    for part in explainer.feature_path[:-1]:
        parent = parent.get_layer(part)
    target = parent.get_layer(explainer.feature_path[-1])
    direct = keras.Model(parent.inputs[0], target.output)
    np.testing.assert_allclose(
        out["features"], np.asarray(direct(x, training=False)), rtol=1e-5, atol=1e-5
    )


def test_tapped_model_reaches_several_nesting_levels(transfer: keras.Model) -> None:
    taps = [
        (("backbone", "efficientnet_lite0", "stem_conv"), "output"),
        (("backbone", "backbone_pool"), "output"),
        (("head", "predictions"), "input"),
    ]
    tapped = tapped_model(transfer, taps)
    x = random_images(2, 64, seed=2)
    stem, pooled, dense_in, output = (np.asarray(t) for t in tapped(x, training=False))
    backbone = transfer.get_layer("backbone")
    np.testing.assert_allclose(
        pooled, np.asarray(backbone(x, training=False)), rtol=1e-5, atol=1e-5
    )
    assert stem.shape == (2, 32, 32, 32)
    head = transfer.get_layer("head")
    hidden = keras.Model(head.inputs[0], head.get_layer("head_dropout1").output)
    np.testing.assert_allclose(
        dense_in, np.asarray(hidden(pooled, training=False)), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(output, transfer.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # The re-wired model shares the weights: no copies were made.
    assert {id(v) for v in tapped.weights} <= {id(v) for v in transfer.weights}


# --- heat maps --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cnn", "transfer", "hybrid"])
def test_heatmap_shape_range_and_class_dependence(
    name: str, request: pytest.FixtureRequest
) -> None:
    model: keras.Model = request.getfixturevalue(name)
    explainer = GradCam(model)
    side = int(model.input_shape[1])
    image = random_images(1, side, seed=4)[0]
    first, second = explainer.explain(image, 0), explainer.explain(image, 1)
    for result in (first, second):
        assert result.heatmap.shape == (side, side) and result.heatmap.dtype == np.float32
        assert result.heatmap.min() >= 0.0 and result.heatmap.max() <= 1.0
        assert result.overlay.shape == (side, side, 3) and result.overlay.dtype == np.uint8
    assert (first.class_index, second.class_index) == (0, 1)
    assert not np.allclose(first.heatmap, second.heatmap)
    default = explainer.explain(image)
    assert default.class_index == int(np.argmax(default.probabilities))
    np.testing.assert_allclose(default.probabilities.sum(), 1.0, rtol=1e-5)


def nested_gap_model(n_classes: int) -> keras.Model:
    """image -> [nested: Conv2D 4 ch, 8x8] -> global average pool -> Dense output."""
    keras.utils.set_random_seed(5)
    inner_in = keras.Input((8, 8, 3))
    inner = keras.Model(
        inner_in, keras.layers.Conv2D(4, 3, padding="same", name="maps")(inner_in), name="inner"
    )
    image = keras.Input((8, 8, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(inner(image))
    units, activation = (1, "sigmoid") if n_classes == 2 else (n_classes, "softmax")
    out = keras.layers.Dense(units, activation=activation, name="predictions")(pooled)
    return keras.Model(image, out)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_heatmap_matches_the_closed_form_for_pooling_and_dense(n_classes: int) -> None:
    # With GAP -> Dense, d z / d A_ijk = W_k / (h w), so Grad-CAM is ReLU(A . w_c) (CAM), with
    # w_c the class's kernel column; the sigmoid's class 0 scores -z, hence -w.
    model = nested_gap_model(n_classes)
    explainer = GradCam(model)
    assert explainer.feature_path == ("inner", "maps")
    image = random_images(1, 8, seed=6)[0]
    maps = np.asarray(model.get_layer("inner")(image[None]))[0]
    kernel = np.asarray(model.get_layer("predictions").kernel)
    for c in range(n_classes):
        w = (kernel[:, 0] if c == 1 else -kernel[:, 0]) if n_classes == 2 else kernel[:, c]
        cam = np.maximum(maps @ w, 0.0)
        expected = cam / cam.max() if cam.max() > 0 else cam
        result = explainer.explain(image, c)
        assert result.class_index == c
        np.testing.assert_allclose(result.heatmap, expected, atol=1e-5)
    with pytest.raises(ValueError, match="class_index"):
        explainer.explain(image, n_classes)


def test_hybrid_returns_the_in_graph_hsv_mask(hybrid: keras.Model) -> None:
    explainer = GradCam(hybrid)
    image = smear_rgb(64).astype(np.float32)
    result = explainer.explain(image)
    assert result.mask is not None and result.mask.shape == (64, 64)
    purple = np.all(smear_rgb(64) == PURPLE, axis=-1)
    np.testing.assert_array_equal(result.mask, purple.astype(np.float32))
    assert GradCam(seeded_model(CNN_SPEC, 3)).explain(random_images(1, 32)[0]).mask is None


def test_overlay_blends_the_colour_map() -> None:
    image = np.full((4, 4, 3), 100, np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    out = overlay_heatmap(image, heat, alpha=0.5, cmap="gray")
    assert out[0, 0].tolist() == [178, 178, 178]  # 0.5 * 100 + 0.5 * 255, rounded
    assert out[1, 1].tolist() == [50, 50, 50]
    np.testing.assert_array_equal(overlay_heatmap(image, heat, alpha=0.0), image)


# --- gallery ----------------------------------------------------------------------------------


CLASSES = ["A", "B", "C"]


def predictions_table() -> pd.DataFrame:
    """Test rows: A 3 correct + 2 wrong, B 1 correct + 0 wrong, C none; plus train rows."""
    rows = [
        ("a0", "A", "A"),
        ("a1", "A", "A"),
        ("a2", "A", "A"),
        ("a3", "A", "B"),
        ("a4", "A", "C"),
        ("b0", "B", "B"),
    ]
    table = pd.DataFrame(rows, columns=["id", "true", "pred"]).assign(split="test")
    train = pd.DataFrame({"id": ["c0"], "true": ["C"], "pred": ["C"], "split": ["train"]})
    table = pd.concat([table, train], ignore_index=True)
    probs = np.full((len(table), 3), 0.1)
    for i, pred in enumerate(table["pred"]):
        probs[i, CLASSES.index(pred)] = 0.8
    for k, cls in enumerate(CLASSES):
        table[f"prob_{cls}"] = probs[:, k]
    return table[["id", "true", "split", "pred", *(f"prob_{c}" for c in CLASSES)]]


def test_selection_is_deterministic_and_capped() -> None:
    table = predictions_table()
    chosen = select_gallery_images(table, CLASSES, per_class=2, seed=1)
    assert chosen.groupby(["true", "correct"]).size().to_dict() == {
        ("A", False): 2,
        ("A", True): 2,
        ("B", True): 1,
    }
    assert "c0" not in set(chosen["id"])
    assert (chosen["prob"] == 0.8).all()
    shuffled = table.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(
        select_gallery_images(shuffled, CLASSES, per_class=2, seed=1), chosen
    )
    picks = {tuple(select_gallery_images(table, CLASSES, 2, seed=s)["id"]) for s in range(8)}
    assert len(picks) > 1  # the seed matters when there are more candidates than slots


def write_images(root: Path, ids: list[str], side: int) -> pd.DataFrame:
    paths = [
        save_image(smooth_rgb(i, side), root / f"{image_id}.png") for i, image_id in enumerate(ids)
    ]
    return pd.DataFrame({"id": ids, "path": [str(p) for p in paths]})


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def saved_model(root: Path, model: keras.Model, spec: dict[str, Any], classes: list[str]) -> Path:
    folder = root / "model"
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    write_model_sidecar(folder / "model.keras", classes, spec)
    return folder


def test_gallery_png_has_one_row_per_class_and_panels_per_slot(
    tmp_path: Path, cnn: keras.Model
) -> None:
    table = predictions_table()
    images = write_images(tmp_path / "img", table["id"].tolist(), 32)
    folder = saved_model(tmp_path, cnn, CNN_SPEC, CLASSES)
    out = tmp_path / "out" / "gallery.png"
    chosen = gradcam_gallery(folder, table, tmp_path / "img", out, per_class=2, seed=1)
    assert len(chosen) == 5 and (chosen["layer"] == "bn3").all()
    assert chosen["path"].tolist() == [images.set_index("id").loc[i, "path"] for i in chosen["id"]]
    # 2 rows (A and B; C has no test image), 2 correct + 2 wrong slots x (image, heat map).
    width, height = PANEL_INCHES
    assert png_size(out) == (round(8 * width * GALLERY_DPI), round(2 * height * GALLERY_DPI))
    again = tmp_path / "again.png"
    pd.testing.assert_frame_equal(
        gradcam_gallery(folder / "model.keras", table, images, again, per_class=2, seed=1), chosen
    )
    assert again.read_bytes() == out.read_bytes()


def test_gallery_of_a_saved_hybrid_shows_the_mask(tmp_path: Path, hybrid: keras.Model) -> None:
    table = predictions_table()
    write_images(tmp_path / "img", table["id"].tolist(), 64)
    folder = saved_model(tmp_path, hybrid, HYBRID_SPEC, CLASSES)
    loaded = GradCam.from_dir(folder)
    assert loaded.classes == CLASSES and loaded.mask_path == ("hsv_mask",)
    assert loaded.feature_path == find_feature_layer(hybrid)
    x = random_images(2, 64, seed=8)
    np.testing.assert_allclose(
        loaded.forward(x)["probabilities"], hybrid.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    out = tmp_path / "hybrid.png"
    paths = dict(zip(table["id"], tmp_path / "img" / (table["id"] + ".png"), strict=True))
    chosen = gradcam_gallery(folder, table, paths, out, per_class=1, seed=0)
    assert len(chosen) == 3  # A: 1 correct + 1 wrong, B: 1 correct
    width, height = PANEL_INCHES
    # 2 rows, (1 correct + 1 wrong) x (image, mask, heat map) = 6 panels per row.
    assert png_size(out) == (round(6 * width * GALLERY_DPI), round(2 * height * GALLERY_DPI))


def test_gallery_refuses_a_multi_variant_manifest(tmp_path: Path, cnn: keras.Model) -> None:
    table = predictions_table()
    images = write_images(tmp_path / "img", table["id"].tolist(), 32)
    manifest = pd.concat([images.assign(variant="Original"), images.assign(variant="Segmented")])
    folder = saved_model(tmp_path, cnn, CNN_SPEC, CLASSES)
    with pytest.raises(ValueError, match="several variants"):
        gradcam_gallery(folder, table, manifest, tmp_path / "x.png", per_class=1)
