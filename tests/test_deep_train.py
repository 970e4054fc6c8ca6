"""Deep training on tiny synthetic images: prediction format, early stopping, determinism,
saving and reloading, with stand-in architectures and (when present) the real ones.

The stand-ins follow the contract of ``leukbench.deep.architectures``: raw RGB in [0, 255],
preprocessing in the graph, a transfer model made of sub-models named ``backbone`` and
``head``, one sigmoid unit for two classes and a softmax otherwise. Other deep test modules
import the helpers defined here.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukbench.deep.data import make_dataset
from leukbench.deep.train import train_deep

ARCH = "leukbench.deep.architectures"
SIDE = 32
PREDICTION_COLUMNS = ["id", "true", "split", "pred"]
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
HAS_ARCHITECTURES = importlib.util.find_spec(ARCH) is not None


# --- stand-in architectures -------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="leukbench_tests")
class UnitScale(keras.layers.Layer):
    """A custom preprocessing layer: [0, 255] -> [0, factor]; must survive save and reload."""

    def __init__(self, factor: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, inputs: Any) -> Any:
        return keras.ops.cast(inputs, self.compute_dtype) * (self.factor / 255.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


def _output(n_classes: int) -> keras.layers.Dense:
    if n_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name="predictions")
    return keras.layers.Dense(n_classes, activation="softmax", name="predictions")


def standin_backbone(spec: Mapping[str, Any]) -> keras.Model:
    side = int(spec["image_size"])
    inputs = keras.Input((side, side, 3))
    x = UnitScale(2.0, name="scale")(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, x, name="backbone")
    model.trainable = int(spec.get("trainable_layers", 0)) > 0
    return model


def standin_head(spec: Mapping[str, Any], feature_shape: Sequence[int], n_classes: int) -> Any:
    inputs = keras.Input(tuple(feature_shape))
    x = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, _output(n_classes)(x), name="head")


def standin_model(spec: Mapping[str, Any], n_classes: int) -> keras.Model:
    side = int(spec["image_size"])
    inputs = keras.Input((side, side, 3))
    if spec["family"] == "transfer":
        backbone = standin_backbone(spec)
        head = standin_head(spec, backbone.output_shape[1:], n_classes)
        return keras.Model(inputs, head(backbone(inputs, training=False)), name="transfer")
    # cnn and hybrid: built-in layers only, so a subprocess can load the saved file.
    x = keras.layers.Rescaling(1.0 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, _output(n_classes)(x), name=spec["family"])


def standin_architectures() -> types.ModuleType:
    module = types.ModuleType(ARCH)
    module.build_backbone = standin_backbone  # type: ignore[attr-defined]
    module.build_head = standin_head  # type: ignore[attr-defined]
    module.build_model = standin_model  # type: ignore[attr-defined]
    return module


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Route ``leukbench.deep.architectures`` to the stand-ins for one test."""
    module = standin_architectures()
    monkeypatch.setitem(sys.modules, ARCH, module)
    return module


# --- synthetic data ---------------------------------------------------------------------------


def make_spec(family: str = "cnn", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "family": family,
        "image_size": SIDE,
        "batch_size": 8,
        "epochs": 1,
        "learning_rate": 0.01,
        "patience": 3,
        "augmentation": "none",
        "class_weight": "balanced",
        "cache_features": family == "transfer",
        "trainable_layers": 0,
        "backbone": "standin",
        "weights": None,
        "head": None,
        "hsv": None,
        "hybrid_variant": None,
    }
    return spec | overrides


COLOURS = [(200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60)]


def cell_image(cls: int, n: int, side: int = SIDE) -> np.ndarray:
    """A class-coloured disc on a noisy background; classes differ by colour."""
    rng = np.random.default_rng(1000 * cls + n)
    image = rng.integers(150, 230, size=(side, side, 3)).astype(np.uint8)
    rows, cols = np.mgrid[0:side, 0:side]
    centre = rng.uniform(side * 0.35, side * 0.65, size=2)
    disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= (side * 0.3) ** 2
    image[disc] = COLOURS[cls]
    return image


def synthetic_tables(
    root: Path, classes: Sequence[str], n_per_class: int = 8, side: int = SIDE
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images: id, path, label; splits: id, label, split) with 50/25/25 % per class."""
    image_rows, split_rows = [], []
    for c, cls in enumerate(classes):
        for n in range(n_per_class):
            image_id = f"{cls}/{n:03d}"
            path = root / cls / f"{n:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(cell_image(c, n, side)).save(path)
            split = (
                "train" if n < n_per_class // 2 else "val" if n < 3 * n_per_class // 4 else "test"
            )
            image_rows.append({"id": image_id, "path": str(path), "label": cls})
            split_rows.append({"id": image_id, "label": cls, "split": split})
    return pd.DataFrame(image_rows), pd.DataFrame(split_rows)


def image_table(images: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    return splits.merge(images[["id", "path"]], on="id")


def model_probabilities(model: keras.Model, table: pd.DataFrame, n_classes: int) -> np.ndarray:
    """The model run on the images of `table` through the evaluation pipeline, as (n, k)."""
    stream = make_dataset(table, [], int(model.input_shape[1]), 8, with_labels=False)
    raw = np.asarray(model.predict(stream, verbose=0), dtype=np.float64)
    if n_classes == 2:
        return np.column_stack([1 - raw[:, 0], raw[:, 0]])
    return raw


def check_predictions(predictions: pd.DataFrame, splits: pd.DataFrame, classes: list[str]) -> None:
    """The classic format: id, true, split, pred, prob_<class>; every split image once."""
    assert list(predictions.columns) == PREDICTION_COLUMNS + [f"prob_{c}" for c in classes]
    assert predictions["id"].tolist() == splits["id"].tolist()
    assert predictions["true"].tolist() == splits["label"].tolist()
    assert predictions["split"].tolist() == splits["split"].tolist()
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy()
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert predictions["pred"].tolist() == [classes[i] for i in probs.argmax(axis=1)]


# --- tests with stand-ins ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "classes"),
    [("cnn", ["neg", "pos"]), ("hybrid", ["Benign", "Early", "Pre"])],
    ids=["sigmoid", "softmax"],
)
def test_smoke_training_gives_classic_predictions(
    standins: types.ModuleType, tmp_path: Path, family: str, classes: list[str]
) -> None:
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=8)
    spec = make_spec(family, augmentation="flip_rotate8")
    model, predictions, info, history = train_deep(
        images, splits, classes, spec, seed=7, workdir=tmp_path / "work", threads=2
    )
    check_predictions(predictions, splits, classes)
    # Prediction = the returned model on the unaugmented images.
    table = image_table(images, splits)
    expected = model_probabilities(model, table, len(classes))
    got = predictions[[f"prob_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert list(history.columns) == [
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
    ]
    assert history["epoch"].tolist() == [1]
    assert np.isfinite(history[["loss", "val_loss"]].to_numpy()).all()
    assert info["epochs_run"] == 1 and info["best_epoch"] == 1 and info["cached"] is False
    assert info["params"] == model.count_params() > 0
    assert info["output"] == ("sigmoid" if len(classes) == 2 else "softmax")
    assert info["unpredicted"] == []
    assert pytest.approx(sum(info["class_weights"].values())) == len(classes)  # balanced split
    assert (tmp_path / "work" / "history.tsv").is_file()


def test_binary_probability_is_that_of_the_second_class(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    classes = ["hem", "all"]
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=8)
    model, predictions, _, _ = train_deep(images, splits, classes, make_spec(), seed=1)
    table = image_table(images, splits)
    stream = make_dataset(table, [], SIDE, 8, with_labels=False)
    sigmoid = model.predict(stream, verbose=0)[:, 0]
    np.testing.assert_allclose(predictions["prob_all"], sigmoid, atol=1e-6)
    np.testing.assert_allclose(predictions["prob_hem"], 1 - sigmoid, atol=1e-6)


def test_early_stopping_restores_the_best_epoch(standins: types.ModuleType, tmp_path: Path) -> None:
    """Validation labels are the opposite of the training labels, so the better the model
    learns, the worse its validation loss: the best epoch is an early one, training stops
    `patience` epochs after it, and the weights of that epoch come back."""
    classes = ["a", "b"]
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=8)
    val = splits["split"] == "val"
    splits.loc[val, "label"] = splits.loc[val, "label"].map({"a": "b", "b": "a"})
    spec = make_spec(epochs=12, patience=2, learning_rate=0.05, class_weight="none")
    model, _, info, history = train_deep(images, splits, classes, spec, seed=3)
    best = int(history["val_loss"].idxmin()) + 1
    assert info["best_epoch"] == best
    assert info["epochs_run"] == best + 2 < 12
    assert info["stopped_early"] is True
    model.compile(loss="binary_crossentropy")
    table = image_table(images, splits)
    stream = make_dataset(table[table["split"] == "val"], classes, SIDE, 8)
    restored = model.evaluate(stream, verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(history["val_loss"].min(), rel=1e-4)
    assert restored < history["val_loss"].iloc[-1]


def test_training_is_deterministic_given_the_seed(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    classes = ["a", "b", "c"]
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=8)
    spec = make_spec(epochs=2, augmentation="reference_strong")
    runs = [train_deep(images, splits, classes, spec, seed=s)[1] for s in (11, 11, 12)]
    probs = [r.filter(like="prob_").to_numpy() for r in runs]
    np.testing.assert_array_equal(probs[0], probs[1])
    assert not np.array_equal(probs[0], probs[2])


def test_saved_model_reloads_and_predicts_identically(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    classes = ["a", "b", "c"]
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=8)
    model, predictions, _, _ = train_deep(
        images, splits, classes, make_spec("transfer", trainable_layers=1), seed=5
    )
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.get_layer("backbone").get_layer("scale"), UnitScale)
    table = image_table(images, splits)
    np.testing.assert_array_equal(
        model_probabilities(reloaded, table, 3), model_probabilities(model, table, 3)
    )
    np.testing.assert_allclose(
        model_probabilities(reloaded, table, 3), predictions.filter(like="prob_"), atol=1e-6
    )


def test_split_images_without_a_file_are_reported_not_dropped_silently(
    standins: types.ModuleType, tmp_path: Path
) -> None:
    classes = ["a", "b"]
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=8)
    gone = ["a/007", "b/005"]
    images = images[~images["id"].isin(gone)]
    _, predictions, info, _ = train_deep(images, splits, classes, make_spec(), seed=1)
    assert set(predictions["id"]) == set(splits["id"]) - set(gone)
    assert sorted(r["id"] for r in info["unpredicted"]) == gone
    assert {r["split"] for r in info["unpredicted"]} == {"test", "val"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"family": "svm"}, "unknown deep model family"),
        ({"augmentation": "mixup"}, "unknown augmentation policy"),
        ({"class_weight": "inverse"}, "class_weight"),
    ],
)
def test_bad_specs_fail_clearly(
    standins: types.ModuleType, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    images, splits = synthetic_tables(tmp_path / "img", ["a", "b"], n_per_class=4)
    with pytest.raises(ValueError, match=message):
        train_deep(images, splits, ["a", "b"], make_spec() | change, seed=1)


def test_missing_validation_split_fails_clearly(standins: types.ModuleType, tmp_path: Path) -> None:
    images, splits = synthetic_tables(tmp_path / "img", ["a", "b"], n_per_class=4)
    splits["split"] = splits["split"].replace({"val": "test"})
    with pytest.raises(ValueError, match="no val images"):
        train_deep(images, splits, ["a", "b"], make_spec(), seed=1)


def test_a_class_without_train_images_is_named(standins: types.ModuleType, tmp_path: Path) -> None:
    images, splits = synthetic_tables(tmp_path / "img", ["a", "b", "c"], n_per_class=4)
    splits.loc[(splits["label"] == "b") & (splits["split"] == "train"), "split"] = "test"
    with pytest.raises(ValueError, match=r"no train images of class\(es\) \['b'\]"):
        train_deep(images, splits, ["a", "b", "c"], make_spec(), seed=1)


def test_wrong_output_size_fails_clearly(standins: types.ModuleType, tmp_path: Path) -> None:
    images, splits = synthetic_tables(tmp_path / "img", ["a", "b"], n_per_class=4)
    standins.build_model = lambda spec, n: standin_model(spec, 3)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="one sigmoid unit for two classes"):
        train_deep(images, splits, ["a", "b"], make_spec(), seed=1)


# --- the real architectures -------------------------------------------------------------------


@pytest.fixture
def real_architectures() -> Iterator[types.ModuleType]:
    if not HAS_ARCHITECTURES:
        pytest.skip("leukbench.deep.architectures is not there yet")
    yield importlib.import_module(ARCH)


REAL_SPECS = {
    "cnn": ({"architecture": "aml_cnn", "augmentation": "flip_rotate8"}, ["neg", "pos"], None),
    "transfer": (
        {"backbone": "efficientnet_lite0", "augmentation": "flip_rotate8", "head": {"dense": [8]}},
        ["Benign", "Early", "Pre"],
        "cache.npz",
    ),
    "hybrid": (
        {"backbone": "vgg16", "hybrid_variant": "pooled", "augmentation": "resnet50_study"},
        ["neg", "pos"],
        None,
    ),
}


@pytest.mark.parametrize("family", list(REAL_SPECS))
def test_real_architecture_trains_saves_and_reloads(
    real_architectures: types.ModuleType, tmp_path: Path, family: str
) -> None:
    overrides, classes, cache = REAL_SPECS[family]
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=4)
    spec = make_spec(family, **overrides)
    cache_path = tmp_path / cache if cache else None
    model, predictions, info, _ = train_deep(
        images, splits, classes, spec, seed=2, cache_path=cache_path
    )
    check_predictions(predictions, splits, classes)
    assert info["cached"] is (cache is not None)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    table = image_table(images, splits)
    reloaded_probs = model_probabilities(reloaded, table, len(classes))
    np.testing.assert_allclose(reloaded_probs, predictions.filter(like="prob_"), atol=1e-5)


def test_cached_and_streamed_training_of_a_frozen_transfer_model_agree(
    real_architectures: types.ModuleType, tmp_path: Path
) -> None:
    """Same seed, same start weights, same per-epoch order: only the feature source differs."""
    classes = ["Benign", "Early", "Pre"]
    images, splits = synthetic_tables(tmp_path / "img", classes, n_per_class=8)
    spec = make_spec(
        "transfer",
        backbone="resnet50",
        epochs=3,
        patience=5,
        learning_rate=1e-3,
        head={"pooling": "flatten", "dense": [16], "dropout": 0.0},
    )
    _, cached, cached_info, cached_history = train_deep(
        images, splits, classes, spec, seed=4, cache_path=tmp_path / "cache.npz"
    )
    _, streamed, streamed_info, streamed_history = train_deep(
        images, splits, classes, {**spec, "cache_features": False}, seed=4
    )
    assert cached_info["cached"] and not streamed_info["cached"]
    np.testing.assert_allclose(
        cached_history["loss"], streamed_history["loss"], rtol=1e-3, atol=1e-4
    )
    np.testing.assert_allclose(
        cached.filter(like="prob_"), streamed.filter(like="prob_"), atol=1e-3
    )
