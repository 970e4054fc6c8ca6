"""tf.data input pipelines that stream images from disk, seeded augmentation, labels and weights.

Decoding. Every image goes through :func:`leukbench.images.load_rgb` inside a
``tf.numpy_function``, not through ``tf.io.decode_image`` + ``tf.image.resize``. This is a
deliberate choice: ``load_rgb`` is what the classic pipeline, the feature extractor and
``leukbench.predict`` use, so every model sees byte-identical pixels. The TF decoders would
differ: no TIFF support, RGBA alpha dropped instead of composited on white, 16-bit PNG/TIFF and
palette/CMYK handled differently, and ``tf.image.resize`` bilinear is not PIL's (PIL filters with
an antialiasing support when downscaling). The numpy function is declared ``stateful=False``
(``load_rgb`` is a pure function of the file), so under ``enable_op_determinism`` tf.data still
runs it in parallel and keeps prefetching; a stateful op would serialise the whole pipeline.

Images leave the pipeline as float32 RGB in [0, 255] of shape (S, S, 3): the models hold their
own preprocessing (rescaling, normalisation, HSV) inside the graph.

Augmentation uses stateless random ops only, each image's randomness drawn from a per-element
seed pair ``[seed, r]`` where ``r`` comes from ``tf.data.Dataset.random(seed,
rerandomize_each_iteration=True)``: the sequence of augmentations is a function of the seed
alone (fresh each epoch, identical across runs and independent of ``num_parallel_calls``).
Keras preprocessing layers would draw from a shared stateful generator instead, whose order of
consumption depends on thread scheduling.

Policies (parameter distributions as in Keras' ``ImageDataGenerator``, which the studies used):

* ``none``: the resized image only.
* ``flip_rotate8``: one of the 8 dihedral transforms (4 rotations by 90°, each with or without a
  horizontal flip), uniformly: study 001's ×8 dataset, drawn on the fly.
* ``resnet50_study`` (study 004): rotation ±20°, width/height shift ±0.2, zoom 0.8-1.2, horizontal
  flip.
* ``reference_strong`` (study 003's notebooks): rotation ±40°, shifts ±0.4, shear 0.4, zoom
  0.6-1.4, horizontal flip.

As in ``ImageDataGenerator``: angles uniform in [-r, r] degrees; shifts uniform fractions of the
image side; zoom factors drawn independently for x and y from [1 - z, 1 + z]; the shear *angle*
uniform in [-s, s] **degrees** (Keras' ``apply_affine_transform`` converts ``shear_range`` with
``deg2rad``; the R keras documentation says radians, but the Python code it calls uses degrees,
so study 003's ``shear_range = 0.4`` is a 0.4° shear in practice, and it is reproduced as such);
points outside the image take the nearest edge pixel (``fill_mode="nearest"``); bilinear
interpolation; the flip is applied after the affine transform.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from leukbench.images import load_rgb

POLICIES = ("none", "flip_rotate8", "resnet50_study", "reference_strong")
MANIFEST_COLUMNS = ("id", "path", "label", "split")
N_DIHEDRAL = 8


@dataclass(frozen=True)
class AffinePolicy:
    """Ranges of a random affine augmentation, in ``ImageDataGenerator`` units."""

    rotation_deg: float
    width_shift: float
    height_shift: float
    shear_deg: float
    zoom: float
    horizontal_flip: bool


AFFINE_POLICIES: dict[str, AffinePolicy] = {
    "resnet50_study": AffinePolicy(20.0, 0.2, 0.2, 0.0, 0.2, True),
    "reference_strong": AffinePolicy(40.0, 0.4, 0.4, 0.4, 0.4, True),
}


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown augmentation policy '{policy}'; expected one of {POLICIES}")
    return policy


def image_side(spec: Mapping[str, Any]) -> int:
    """The square input side S of a model spec; ``image_size`` may be S or [S, S]."""
    size = spec["image_size"]
    if isinstance(size, int | np.integer):
        return int(size)
    width, height = (int(v) for v in size)
    if width != height:
        raise ValueError(f"deep models take square images; image_size {list(size)} is not square")
    return width


# --- labels and class weights -----------------------------------------------------------------


def encode_labels(labels: Iterable[str], classes: Sequence[str]) -> np.ndarray:
    """Class indices (int32) in the order of `classes`; an unknown label is an error."""
    index = {cls: i for i, cls in enumerate(classes)}
    labels = list(labels)
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    return np.array([index[label] for label in labels], dtype=np.int32)


def targets(encoded: np.ndarray, n_classes: int) -> np.ndarray:
    """What the loss expects: (n, 1) float32 0/1 for a sigmoid output, else int32 indices."""
    if n_classes == 2:
        return np.asarray(encoded, dtype=np.float32).reshape(-1, 1)
    return np.asarray(encoded, dtype=np.int32)


def class_weights(encoded: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * count_c) for class indices 0..k-1 (k = n_classes).

    A class without a single training example has no finite weight and is an error.
    """
    counts = np.bincount(np.asarray(encoded, dtype=np.int64), minlength=n_classes)
    if (counts == 0).any():
        missing = [int(i) for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"class indices {missing} have no training images: no class weight")
    total = counts.sum()
    return {i: float(total / (n_classes * c)) for i, c in enumerate(counts)}


# --- decoding ---------------------------------------------------------------------------------


def read_image(path: tf.Tensor, side: int) -> tf.Tensor:
    """Decode one image file (string tensor) to uint8 (side, side, 3) via ``load_rgb``."""

    def load(raw: bytes) -> np.ndarray:
        return load_rgb(raw.decode(), (side, side))

    image = tf.numpy_function(load, [path], tf.uint8, stateful=False, name="load_rgb")
    image.set_shape((side, side, 3))
    return image


# --- augmentation -----------------------------------------------------------------------------


def dihedral_view(image: tf.Tensor | np.ndarray, k: tf.Tensor | int) -> tf.Tensor:
    """Transform k in 0..7 of a square HxWxC image: ``rot90`` k % 4 times, then a left-right
    flip when k >= 4. k = 0 is the image itself."""
    image = tf.convert_to_tensor(image)
    k = tf.convert_to_tensor(k, dtype=tf.int32)
    rotated = tf.image.rot90(image, k=k % 4)
    return tf.cond(k >= 4, lambda: tf.image.flip_left_right(rotated), lambda: rotated)


def dihedral_views(image: tf.Tensor | np.ndarray) -> tf.Tensor:
    """All 8 dihedral transforms of a square image, stacked (8, H, W, C); view k as
    :func:`dihedral_view`, so view 0 is the unchanged image."""
    image = tf.convert_to_tensor(image)
    rotations = [tf.image.rot90(image, k=k) for k in range(4)]
    return tf.stack(rotations + [tf.image.flip_left_right(r) for r in rotations])


def affine_matrix(
    height: int,
    width: int,
    rotation_deg: tf.Tensor | float = 0.0,
    shift_x: tf.Tensor | float = 0.0,
    shift_y: tf.Tensor | float = 0.0,
    shear_deg: tf.Tensor | float = 0.0,
    zoom_x: tf.Tensor | float = 1.0,
    zoom_y: tf.Tensor | float = 1.0,
) -> tf.Tensor:
    """3x3 map from output pixel (x, y, 1) to the input point it samples.

    Composed like ``ImageDataGenerator``: rotation · shift · shear · zoom, about the image centre.
    Shifts are in pixels.
    """

    def f32(v: tf.Tensor | float) -> tf.Tensor:
        return tf.cast(tf.convert_to_tensor(v), tf.float32)

    theta = f32(rotation_deg) * (math.pi / 180.0)
    shear = f32(shear_deg) * (math.pi / 180.0)
    one, zero = tf.constant(1.0), tf.constant(0.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    rotation = tf.stack([[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]])
    shift = tf.stack([[one, zero, f32(shift_x)], [zero, one, f32(shift_y)], [zero, zero, one]])
    shear_m = tf.stack(
        [[one, -tf.sin(shear), zero], [zero, tf.cos(shear), zero], [zero, zero, one]]
    )
    zoom = tf.stack([[f32(zoom_x), zero, zero], [zero, f32(zoom_y), zero], [zero, zero, one]])
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    to_centre = tf.constant([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    back = tf.constant([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
    return back @ rotation @ shift @ shear_m @ zoom @ to_centre


def apply_affine(image: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """Resample an HxWxC float image through `matrix` (:func:`affine_matrix`), bilinear,
    nearest-edge fill."""
    image = tf.cast(image, tf.float32)
    flat = tf.reshape(matrix, [9])[:8] / matrix[2, 2]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=flat[tf.newaxis],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    return out[0]


def random_affine(image: tf.Tensor, policy: AffinePolicy, seed: tf.Tensor) -> tf.Tensor:
    """One draw of `policy` for an HxWxC image from the stateless seed pair `seed`."""
    image = tf.cast(image, tf.float32)
    shape = image.shape
    height, width = int(shape[0]), int(shape[1])
    u = tf.random.stateless_uniform([7], seed=seed, minval=-1.0, maxval=1.0)
    matrix = affine_matrix(
        height,
        width,
        rotation_deg=u[0] * policy.rotation_deg,
        shift_x=u[1] * policy.width_shift * width,
        shift_y=u[2] * policy.height_shift * height,
        shear_deg=u[3] * policy.shear_deg,
        zoom_x=1.0 + u[4] * policy.zoom,
        zoom_y=1.0 + u[5] * policy.zoom,
    )
    out = apply_affine(image, matrix)
    if policy.horizontal_flip:
        out = tf.cond(u[6] < 0.0, lambda: tf.image.flip_left_right(out), lambda: out)
    return out


def augment(
    image: tf.Tensor | np.ndarray, policy: str, seed: tf.Tensor | Sequence[int]
) -> tf.Tensor:
    """One seeded random view of an HxWx3 image under `policy`, as float32 in [0, 255].

    `seed` is a stateless seed pair (two integers): the same pair always gives the same view.
    """
    check_policy(policy)
    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if policy == "none":
        return image
    if policy == "flip_rotate8":
        k = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=N_DIHEDRAL, dtype=tf.int32)
        return dihedral_view(image, k)
    return random_affine(image, AFFINE_POLICIES[policy], seed)


# --- pipelines --------------------------------------------------------------------------------


def check_manifest(table: pd.DataFrame, columns: Sequence[str] = MANIFEST_COLUMNS) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"image table lacks columns {missing}; it has {list(table.columns)}")
    duplicated = table["id"][table["id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"image ids appear more than once: {duplicated[:5]}")


def _with_threads(dataset: tf.data.Dataset, threads: int | None) -> tf.data.Dataset:
    if threads is None:
        return dataset
    options = tf.data.Options()
    options.threading.private_threadpool_size = int(threads)
    return dataset.with_options(options)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Batches in one epoch of a training stream (the last one may be smaller)."""
    return max(1, math.ceil(n_images / batch_size))


def make_dataset(
    table: pd.DataFrame,
    classes: Sequence[str],
    image_size: int,
    batch_size: int,
    *,
    training: bool = False,
    augmentation: str = "none",
    seed: int = 0,
    epochs: int = 1,
    first_epoch: int = 0,
    weights: Mapping[int, float] | None = None,
    with_labels: bool = True,
    threads: int | None = None,
) -> tf.data.Dataset:
    """Batches of (images, targets[, sample weights]) streamed from ``table['path']``.

    Evaluation (``training=False``): one pass in the order of `table`, no augmentation.

    Training: epochs ``first_epoch .. first_epoch + epochs - 1`` back to back, each a fresh
    permutation of the rows, each of exactly :func:`steps_per_epoch` batches (batches never
    straddle two epochs), so pass ``steps_per_epoch`` to ``fit``. Epoch e's order is a stateless
    function of ``(seed, e)`` and the augmentation of image i in epoch e of ``(seed, e, i)``:
    nothing depends on TF's global seed, on thread scheduling or on how often the dataset is
    iterated.

    `weights` (class index -> weight) adds per-sample weights. ``with_labels=False`` yields
    images only (``table`` then needs no ``label`` column).
    """
    check_policy(augmentation)
    check_manifest(table, ("id", "path", "label") if with_labels else ("id", "path"))
    n = len(table)
    if n == 0:
        raise ValueError("no images to stream")
    columns: list[np.ndarray] = [table["path"].astype(str).to_numpy()]
    if with_labels:
        encoded = encode_labels(table["label"], classes)
        columns.append(targets(encoded, len(classes)))
        if weights is not None:
            columns.append(np.array([weights[int(i)] for i in encoded], dtype=np.float32))
    constants = [tf.constant(c) for c in columns]
    seed_t = tf.constant(seed, tf.int64)
    augmented = training and augmentation != "none"

    def load(i: tf.Tensor, epoch: tf.Tensor) -> tuple[tf.Tensor, ...]:
        image = read_image(tf.gather(constants[0], i), image_size)
        if augmented:
            element = epoch * (1 << 32) + tf.cast(i, tf.int64)
            image = augment(image, augmentation, tf.stack([seed_t, element]))
        else:
            image = tf.cast(image, tf.float32)
        return (image, *(tf.gather(c, i) for c in constants[1:]))

    def batches(rows: tf.data.Dataset) -> tf.data.Dataset:
        loaded = rows.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return loaded.batch(batch_size)

    if training:

        def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
            noise = tf.random.stateless_uniform([n], seed=tf.stack([seed_t, epoch]))
            order = tf.argsort(noise, stable=True)
            rows = tf.data.Dataset.from_tensor_slices(order)
            return batches(rows.map(lambda i: (i, epoch)))

        dataset = tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(one_epoch)
    else:
        rows = tf.data.Dataset.range(n).map(lambda i: (i, tf.constant(0, tf.int64)))
        dataset = batches(rows)
    return _with_threads(dataset.prefetch(tf.data.AUTOTUNE), threads)
