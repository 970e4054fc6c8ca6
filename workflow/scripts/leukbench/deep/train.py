"""Train one deep model on the shared split and predict every image, in the classic format.

Two ways to train:

* streaming (every family): images are decoded and augmented on the fly by
  :func:`leukbench.deep.data.make_dataset` and the whole model is fitted;
* cached (``family: transfer`` with ``trainable_layers: 0`` and a ``cache_path``): the frozen
  backbone's features come from :mod:`leukbench.deep.cache`, only the head is fitted, one view of
  each training image drawn per epoch. Backbone and trained head are then assembled into the full
  model of ``build_model(spec, n_classes)`` (what the caller saves). The predictions table is the
  head applied to the cached unaugmented features: the same function as the assembled model on
  the images (up to float32 rounding; with a float16 cache, of the rounded features), without a
  second pass of the backbone over every image; a batch of images is run through the assembled
  model to check that the cache matches it. A missing cache file is computed first; an existing
  one must carry this model's :func:`~leukbench.deep.cache.cache_key`.

Both: Adam at ``learning_rate``; class weights as per-sample weights on the training loss
(validation loss unweighted, as Keras' ``class_weight`` does); early stopping on ``val_loss``
with ``patience`` and the best epoch's weights restored at the end, whether or not training
stopped early.

Determinism: ``keras.utils.set_random_seed(seed)`` before building and
``tf.config.experimental.enable_op_determinism()`` (set ``spec['deterministic'] = False`` to skip
it, e.g. for GPU ops without a deterministic kernel). The input pipelines use only stateless
random ops and a stateless numpy decode, so determinism does not serialise them; it does turn
off XLA under ``jit_compile='auto'``. The setting is process-wide and cannot be undone.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from leukbench.deep.cache import (
    FeatureCache,
    architectures,
    build_seeded_backbone,
    cache_key,
    check_cacheable,
    compute_feature_cache,
    load_feature_cache,
    sampled_views,
)
from leukbench.deep.data import (
    check_policy,
    class_weights,
    encode_labels,
    image_side,
    make_dataset,
    steps_per_epoch,
    targets,
)
from leukbench.predict import write_model_sidecar

__all__ = [
    "assemble",
    "configure_tensorflow",
    "predictions_table",
    "probabilities",
    "split_table",
    "train_deep",
    "write_model_sidecar",  # defined with its reader in leukbench.predict
]

log = logging.getLogger(__name__)

FAMILIES = ("cnn", "transfer", "hybrid")
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


# --- TensorFlow runtime -----------------------------------------------------------------------


def configure_tensorflow(
    seed: int, threads: int | None = None, deterministic: bool = True
) -> dict[str, Any]:
    """Seeds, op determinism, CPU thread pools and GPU memory growth; returns what took effect.

    Thread pools and memory growth can only change before TensorFlow initialises its runtime; a
    later call keeps the current setting and logs that it did.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if threads is not None:
        threads = max(1, int(threads))
        # Kernels (convolutions, matmuls) use the intra-op pool; the inter-op pool runs
        # independent graph branches, of which these models have at most two.
        wanted = {"intra": threads, "inter": min(threads, 2)}
        setters = {
            "intra": tf.config.threading.set_intra_op_parallelism_threads,
            "inter": tf.config.threading.set_inter_op_parallelism_threads,
        }
        for pool, value in wanted.items():
            try:
                setters[pool](value)
            except RuntimeError:
                log.warning(
                    "TensorFlow is already initialised: %s-op threads stay as they are", pool
                )
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.warning("GPU %s already initialised: memory growth unchanged", gpu.name)
    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "deterministic": bool(deterministic),
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


# --- tables -----------------------------------------------------------------------------------


def split_table(
    images_df: pd.DataFrame, splits_df: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(id, path, label, split) of every split image that has a file, in split order, and the
    split images without one (id, split), which cannot be predicted."""
    for name, table, columns in (
        ("image manifest", images_df, ("id", "path")),
        ("split table", splits_df, ("id", "label", "split")),
    ):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    duplicated = images_df["id"][images_df["id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(
            f"image manifest lists ids more than once (one variant only): {duplicated[:5]}"
        )
    table = splits_df[["id", "label", "split"]].merge(
        images_df[["id", "path"]], on="id", how="left"
    )
    no_file = table["path"].isna() | (table["path"].astype(str) == "")
    unpredicted = table.loc[no_file, ["id", "split"]].reset_index(drop=True)
    table = table[~no_file][["id", "path", "label", "split"]].reset_index(drop=True)
    return table, unpredicted


def probabilities(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, k) class probabilities from a model output: a sigmoid's p is the second class's."""
    raw = np.asarray(raw, dtype=np.float64)
    if n_classes == 2:
        p = raw.reshape(len(raw), -1)[:, -1]
        return np.column_stack([1.0 - p, p])
    return raw.reshape(len(raw), n_classes)


def predictions_table(
    table: pd.DataFrame, probs: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    """id, true, split, pred, prob_<class>: the format of the classic models."""
    out = pd.DataFrame(
        {
            "id": table["id"].to_numpy(),
            "true": table["label"].to_numpy(),
            "split": table["split"].to_numpy(),
            "pred": [classes[i] for i in np.argmax(probs, axis=1)],
        }
    )
    for k, cls in enumerate(classes):
        out[f"prob_{cls}"] = probs[:, k]
    return out


# --- model helpers ----------------------------------------------------------------------------


def output_units(n_classes: int) -> int:
    return 1 if n_classes == 2 else n_classes


def _check_output(model: keras.Model, n_classes: int, what: str) -> None:
    units = model.output_shape[-1]
    if units != output_units(n_classes):
        raise ValueError(
            f"{what} has {units} outputs; {n_classes} classes need {output_units(n_classes)} "
            "(one sigmoid unit for two classes, else one softmax unit per class)"
        )


def _compile(model: keras.Model, n_classes: int, learning_rate: float) -> None:
    if n_classes == 2:
        loss: keras.losses.Loss = keras.losses.BinaryCrossentropy()
        metric: keras.metrics.Metric = keras.metrics.BinaryAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=[metric]
    )


class EpochLog(keras.callbacks.Callback):
    """Per-epoch metrics and wall time, logged and (with `path`) written as a TSV each epoch."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__()
        self.path = path
        self.rows: list[dict[str, float]] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        row |= {c: float(logs.get(c, math.nan)) for c in HISTORY_COLUMNS[1:-1]}
        row["seconds"] = time.perf_counter() - self._start
        self.rows.append(row)
        log.info(
            "epoch %d: loss %.4f acc %.4f val_loss %.4f val_acc %.4f (%.1f s)",
            *(row[c] for c in HISTORY_COLUMNS),
        )
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.history().to_csv(self.path, sep="\t", index=False, na_rep="NaN")

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)


def _fit(
    model: keras.Model,
    train: Any,
    validation: Any,
    spec: Mapping[str, Any],
    steps: int,
    workdir: Path | None,
) -> tuple[pd.DataFrame, int, float]:
    """Fit with early stopping; returns (history, best epoch counted from 1, seconds)."""
    epochs = int(spec["epochs"])
    patience = spec.get("patience")
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        mode="min",
        patience=epochs if patience is None else int(patience),
        restore_best_weights=True,
    )
    epoch_log = EpochLog(workdir / "history.tsv" if workdir is not None else None)
    start = time.perf_counter()
    model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[stopper, epoch_log],
        shuffle=False,  # the training streams shuffle themselves, reproducibly
        verbose=0,
    )
    seconds = time.perf_counter() - start
    history = epoch_log.history()
    return history, int(stopper.best_epoch) + 1, seconds


# --- cached features --------------------------------------------------------------------------


def _feature_loader(
    cache: FeatureCache,
) -> Callable[..., tuple[tf.Tensor, ...]]:
    """A tf.data map function: (cache rows, *rest) -> (features, *rest), read per batch from the
    (memory-mapped) cache; stateless, so op determinism does not serialise the pipeline."""
    features = cache.features
    feature_shape = cache.feature_shape

    def gather(rows: np.ndarray) -> np.ndarray:
        return np.asarray(features[rows], dtype=np.float32)

    def load(rows: tf.Tensor, *rest: tf.Tensor) -> tuple[tf.Tensor, ...]:
        x = tf.numpy_function(gather, [rows], tf.float32, stateful=False, name="cached_features")
        x.set_shape((None, *feature_shape))
        return (x, *rest)

    return load


def _cached_eval_stream(
    cache: FeatureCache, rows: np.ndarray, y: np.ndarray | None, batch_size: int
) -> tf.data.Dataset:
    """Features of `rows` in order (with targets `y` when given), batch by batch."""
    columns = (rows,) if y is None else (rows, y)
    batches = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)
    return batches.map(_feature_loader(cache)).prefetch(tf.data.AUTOTUNE)


# Offsets the seed of the per-epoch view draw from the per-epoch order's.
VIEW_SALT = 7919


def _cached_train_stream(
    cache: FeatureCache,
    groups: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    batch_size: int,
    seed: int,
    epochs: int,
) -> tf.data.Dataset:
    """Epoch e: a stateless permutation of the training images and, for each, one of its views
    drawn uniformly (both functions of (seed, e)); `groups` holds each image's view rows."""
    n, n_views = groups.shape
    group_t, y_t = tf.constant(groups), tf.constant(y)
    w_t = tf.constant(w) if w is not None else None
    seed_t = tf.constant(seed, tf.int64)
    load = _feature_loader(cache)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        # The same per-epoch order as the streaming pipeline (data.make_dataset), so a cached
        # and a streamed run of one model see the training images in the same sequence.
        order_noise = tf.random.stateless_uniform([n], seed=tf.stack([seed_t, epoch]))
        order = tf.argsort(order_noise, stable=True)
        view_noise = tf.random.stateless_uniform([n], seed=tf.stack([seed_t + VIEW_SALT, epoch]))
        pick = tf.minimum(tf.cast(view_noise * n_views, tf.int32), n_views - 1)
        rows = tf.gather_nd(group_t, tf.stack([tf.range(n), pick], axis=1))
        columns = [tf.gather(rows, order), tf.gather(y_t, order)]
        if w_t is not None:
            columns.append(tf.gather(w_t, order))
        return tf.data.Dataset.from_tensor_slices(tuple(columns)).batch(batch_size).map(load)

    stream = tf.data.Dataset.range(epochs).flat_map(one_epoch)
    return stream.prefetch(tf.data.AUTOTUNE)


def _ensure_cache(
    table: pd.DataFrame,
    spec: Mapping[str, Any],
    seed: int,
    cache_path: Path,
    threads: int | None,
) -> tuple[FeatureCache, float]:
    """Load the cache at `cache_path`, computing it first when the file does not exist."""
    key = cache_key(spec, seed)
    seconds = 0.0
    if not cache_path.exists():
        seconds = compute_feature_cache(
            table, spec, seed, cache_path, int(spec["batch_size"]), threads=threads
        )["seconds"]
    cache = load_feature_cache(cache_path)
    if cache.key != key:
        raise ValueError(
            f"{cache_path}: feature cache key {cache.key!r} is not this model's {key!r} "
            "(other backbone, weights, image size or views); point cache_path elsewhere"
        )
    return cache, seconds


def _view_groups(cache: FeatureCache, ids: Sequence[str], views: np.ndarray) -> np.ndarray:
    """(n_images, n_views) cache rows of the training views of each id."""
    return np.stack([cache.rows(ids, int(v)) for v in views], axis=1)


def assemble(spec: Mapping[str, Any], n_classes: int, seed: int, head: keras.Model) -> keras.Model:
    """The full transfer network: the cache's backbone (rebuilt as the cache built it) followed
    by the trained head.

    Uses ``architectures.assemble_transfer_model`` when the module has it (what ``build_model``
    does for a transfer model); otherwise builds ``build_model(spec, n_classes)`` and copies the
    weights into its layers named ``backbone`` and ``head``.
    """
    arch = architectures()
    backbone = build_seeded_backbone(spec, seed)
    assembler = getattr(arch, "assemble_transfer_model", None)
    if assembler is not None:
        return assembler(backbone, head, name=f"transfer_{spec.get('backbone')}")
    model = arch.build_model(dict(spec), n_classes)
    for name, source in (("backbone", backbone), ("head", head)):
        try:
            target = model.get_layer(name)
        except ValueError as exc:
            raise ValueError(
                f"build_model gave no layer named {name!r}: cannot assemble the cached model"
            ) from exc
        target.set_weights(source.get_weights())
    return model


def _check_against_cache(
    model: keras.Model, cache: FeatureCache, table: pd.DataFrame, side: int, batch_size: int
) -> None:
    """Run one batch of images through the assembled backbone and compare with the cache."""
    sample = table.iloc[: max(1, min(batch_size, 8))]
    images = next(iter(make_dataset(sample, [], side, len(sample), with_labels=False)))[0]
    fresh = np.asarray(model.get_layer("backbone")(images, training=False), dtype=np.float64)
    cached = cache.features[cache.rows(sample["id"])].astype(np.float64)
    rtol = 1e-2 if cache.features.dtype == np.float16 else 1e-3
    scale = max(float(np.abs(fresh).max()), 1e-12)
    if not np.allclose(cached, fresh, rtol=rtol, atol=rtol * scale):
        worst = float(np.abs(cached - fresh).max())
        raise ValueError(
            f"the feature cache does not match the backbone (max difference {worst:.3g} at "
            f"feature scale {scale:.3g}): stale cache? delete it and rerun"
        )


def _train_cached(
    table: pd.DataFrame,
    classes: Sequence[str],
    spec: Mapping[str, Any],
    seed: int,
    weights: dict[int, float] | None,
    cache_path: Path,
    workdir: Path | None,
    threads: int | None,
) -> tuple[keras.Model, np.ndarray, pd.DataFrame, int, dict[str, Any]]:
    check_cacheable(spec)
    n_classes = len(classes)
    batch_size = int(spec["batch_size"])
    cache, cache_seconds = _ensure_cache(table, spec, seed, cache_path, threads)
    train = table[table["split"] == "train"]
    val = table[table["split"] == "val"]
    encoded = encode_labels(train["label"], classes)
    w = np.array([weights[int(i)] for i in encoded], np.float32) if weights else None
    groups = _view_groups(cache, train["id"].tolist(), sampled_views(spec))
    stream = _cached_train_stream(
        cache, groups, targets(encoded, n_classes), w, batch_size, seed, int(spec["epochs"])
    )
    y_val = targets(encode_labels(val["label"], classes), n_classes)
    validation = _cached_eval_stream(cache, cache.rows(val["id"]), y_val, batch_size)

    keras.utils.set_random_seed(seed)
    head = architectures().build_head(dict(spec), cache.feature_shape, n_classes)
    _check_output(head, n_classes, "build_head")
    _compile(head, n_classes, float(spec["learning_rate"]))
    steps = steps_per_epoch(len(train), batch_size)
    history, best_epoch, seconds = _fit(head, stream, validation, spec, steps, workdir)

    every = _cached_eval_stream(cache, cache.rows(table["id"]), None, batch_size)
    probs = probabilities(head.predict(every, verbose=0), n_classes)
    model = assemble(spec, n_classes, seed, head)
    _check_output(model, n_classes, "build_model")
    _check_against_cache(model, cache, table, image_side(spec), batch_size)
    extra = {
        "cache_key": cache.key,
        "cache_path": str(cache_path),
        "cache_seconds": cache_seconds,
        "cache_rows": len(cache.ids),
        "fit_seconds": seconds,
    }
    return model, probs, history, best_epoch, extra


# --- streaming --------------------------------------------------------------------------------


def _build_streaming_model(spec: Mapping[str, Any], n_classes: int, seed: int) -> keras.Model:
    """The model to fit on streamed images.

    A frozen transfer model is built exactly as the cached path builds it (seeded backbone, then
    the head from a freshly set seed), so the two paths start from identical weights and differ
    only in where the backbone's features come from.
    """
    arch = architectures()
    frozen_transfer = spec.get("family") == "transfer" and not spec.get("trainable_layers", 0)
    if not frozen_transfer:
        keras.utils.set_random_seed(seed)
        return arch.build_model(dict(spec), n_classes)
    backbone = build_seeded_backbone(spec, seed)
    keras.utils.set_random_seed(seed)
    head = arch.build_head(dict(spec), tuple(backbone.output.shape[1:]), n_classes)
    return arch.assemble_transfer_model(backbone, head, name=f"transfer_{spec.get('backbone')}")


def _train_streaming(
    table: pd.DataFrame,
    classes: Sequence[str],
    spec: Mapping[str, Any],
    seed: int,
    weights: dict[int, float] | None,
    workdir: Path | None,
    threads: int | None,
) -> tuple[keras.Model, np.ndarray, pd.DataFrame, int, dict[str, Any]]:
    n_classes = len(classes)
    side = image_side(spec)
    batch_size = int(spec["batch_size"])
    train = table[table["split"] == "train"]
    val = table[table["split"] == "val"]
    model = _build_streaming_model(spec, n_classes, seed)
    _check_output(model, n_classes, "build_model")
    _compile(model, n_classes, float(spec["learning_rate"]))
    stream = make_dataset(
        train,
        classes,
        side,
        batch_size,
        training=True,
        augmentation=spec.get("augmentation", "none"),
        seed=seed,
        epochs=int(spec["epochs"]),
        weights=weights,
        threads=threads,
    )
    validation = make_dataset(val, classes, side, batch_size, threads=threads)
    steps = steps_per_epoch(len(train), batch_size)
    history, best_epoch, seconds = _fit(model, stream, validation, spec, steps, workdir)
    every = make_dataset(table, classes, side, batch_size, with_labels=False, threads=threads)
    probs = probabilities(model.predict(every, verbose=0), n_classes)
    return model, probs, history, best_epoch, {"fit_seconds": seconds}


# --- entry ------------------------------------------------------------------------------------


def check_spec(spec: Mapping[str, Any], classes: Sequence[str]) -> None:
    if spec.get("family") not in FAMILIES:
        raise ValueError(f"unknown deep model family {spec.get('family')!r}; expected {FAMILIES}")
    for key in ("image_size", "batch_size", "epochs", "learning_rate"):
        if key not in spec:
            raise ValueError(f"model spec lacks {key!r}")
    check_policy(spec.get("augmentation", "none"))
    if spec.get("class_weight", "balanced") not in ("balanced", "none", None):
        raise ValueError(f"class_weight must be 'balanced' or 'none', not {spec['class_weight']!r}")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"need two or more distinct classes, got {list(classes)}")


def train_deep(
    images_df: pd.DataFrame,
    splits_df: pd.DataFrame,
    classes: Sequence[str],
    spec: Mapping[str, Any],
    seed: int,
    *,
    cache_path: str | Path | None = None,
    workdir: str | Path | None = None,
    threads: int | None = None,
) -> tuple[keras.Model, pd.DataFrame, dict[str, Any], pd.DataFrame]:
    """Fit one deep model on the train split, stopping early on the val split.

    `images_df`: id, path (one dataset variant); `splits_df`: id, label, split. With
    `cache_path` (transfer model, frozen backbone) the head trains on cached backbone features,
    computed into `cache_path` first when that file does not exist. `workdir`, when given,
    receives ``history.tsv`` after every epoch. Returns (model, predictions for every split in
    the classic format, info, per-epoch history).
    """
    start = time.perf_counter()
    classes = list(classes)
    check_spec(spec, classes)
    runtime = configure_tensorflow(seed, threads, bool(spec.get("deterministic", True)))
    table, unpredicted = split_table(images_df, splits_df)
    encode_labels(table["label"], classes)
    sizes = table["split"].value_counts().to_dict()
    for part in ("train", "val"):
        if not sizes.get(part):
            raise ValueError(f"no {part} images: training needs train and val splits")
    n_classes = len(classes)
    train_labels = table.loc[table["split"] == "train", "label"]
    absent = [c for c in classes if c not in set(train_labels)]
    if absent:
        raise ValueError(
            f"no train images of class(es) {absent} (train has {len(train_labels)} images): "
            "the split left them out; give the task more images of those classes, or fewer "
            "groups per split (leakage.proxy_groups for a proxy split)"
        )
    train_encoded = encode_labels(train_labels, classes)
    balanced = spec.get("class_weight", "balanced") == "balanced"
    weights = class_weights(train_encoded, n_classes) if balanced else None
    workdir_path = Path(workdir) if workdir is not None else None
    cached = cache_path is not None
    if spec.get("cache_features") and not cached:
        log.info("cache_features is set but no cache_path was given: streaming images instead")
    if cached:
        model, probs, history, best_epoch, extra = _train_cached(
            table, classes, spec, seed, weights, Path(cache_path), workdir_path, threads
        )
    else:
        model, probs, history, best_epoch, extra = _train_streaming(
            table, classes, spec, seed, weights, workdir_path, threads
        )
    predictions = predictions_table(table, probs, classes)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    info: dict[str, Any] = {
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "stopped_early": len(history) < int(spec["epochs"]),
        "train_seconds": extra.pop("fit_seconds"),
        "total_seconds": time.perf_counter() - start,
        "cached": cached,
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "output": "sigmoid" if n_classes == 2 else "softmax",
        "class_weights": {classes[i]: w for i, w in weights.items()} if weights else None,
        "split_sizes": {k: int(v) for k, v in sizes.items()},
        "runtime": runtime,
        "unpredicted": unpredicted.to_dict("records"),
        **extra,
    }
    return model, predictions, info, history
