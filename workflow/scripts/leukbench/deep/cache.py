"""Backbone features computed once and reused: a frozen backbone is not re-run every epoch.

A transfer model whose backbone is frozen (``trainable_layers == 0``) is ``head(backbone(x))``
with a fixed ``backbone``: its features can be computed once per image *view* and the head
trained on them. One cache file serves every head, learning rate and seed that share the
backbone, its weights, the input size and the views (see :func:`cache_key`).

Views. View 0 is the unaugmented image, computed for every image. Training images also get
augmented views, from which training draws one per image and epoch:

* ``flip_rotate8``: views 0..7 are the 8 dihedral transforms
  (:func:`leukbench.deep.data.dihedral_views`); drawing one uniformly is exactly the on-the-fly
  policy.
* ``resnet50_study`` / ``reference_strong``: views 1..n are n seeded random draws of the policy
  (``spec['cache_views']``, default 4); training draws among them. This is a finite pool in place
  of a fresh draw every epoch: the price of caching a random augmentation.
* ``none``: view 0 only.

File format: an uncompressed ``.npz`` with ``ids`` (str), ``splits`` (str), ``views`` (int16),
``features`` (one row per (image, view), in the backbone's output shape) and ``meta`` (a JSON
string: key, spec parts, feature shape, dtype, seed). Features are float32 by default: the head
trains in float32 and the cache then reproduces the backbone to float32 rounding (see the
tests). ``spec['cache_dtype'] = 'float16'`` halves the size (relative error <= 2**-11) for
backbones whose un-pooled output is large (ResNet50's 7x7x2048 map for study 004's Flatten
head: 400 kB per view in float32, about 20 GB for 11,879 images with 4 extra training views).

Memory: images are streamed from disk in batches; features are written to a ``.npy`` memory map
next to the output and then copied into the ``.npz`` in chunks (the disk briefly holds both
copies), and :func:`load_feature_cache` memory-maps them back (the zip is uncompressed), so
neither the pixels nor the features of all images are ever held in memory at once.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from leukbench.deep.data import (
    N_DIHEDRAL,
    augment,
    check_manifest,
    check_policy,
    dihedral_views,
    image_side,
    read_image,
)
from leukbench.images import sha256_file

log = logging.getLogger(__name__)

ARCHITECTURES_MODULE = "leukbench.deep.architectures"
CACHE_FORMAT = 1
DEFAULT_RANDOM_VIEWS = 4


def architectures() -> ModuleType:
    """``leukbench.deep.architectures``, looked up at call time (tests substitute stand-ins)."""
    return importlib.import_module(ARCHITECTURES_MODULE)


def check_cacheable(spec: Mapping[str, Any]) -> None:
    """Only a transfer model with a fully frozen backbone may train on cached features."""
    if spec.get("family") != "transfer" or int(spec.get("trainable_layers", 0) or 0) != 0:
        raise ValueError(
            "feature caching needs family 'transfer' with trainable_layers 0 (a frozen backbone); "
            f"got family {spec.get('family')!r}, trainable_layers {spec.get('trainable_layers')!r}"
        )


# --- views ------------------------------------------------------------------------------------


def n_random_views(spec: Mapping[str, Any]) -> int:
    n = int(spec.get("cache_views", DEFAULT_RANDOM_VIEWS))
    if n < 1:
        raise ValueError(f"cache_views must be at least 1, got {n}")
    return n


def train_views(spec: Mapping[str, Any]) -> int:
    """Rows a training image has in the cache (view 0 included)."""
    policy = check_policy(spec.get("augmentation", "none"))
    if policy == "none":
        return 1
    if policy == "flip_rotate8":
        return N_DIHEDRAL
    return 1 + n_random_views(spec)


def sampled_views(spec: Mapping[str, Any]) -> np.ndarray:
    """The views training draws from, uniformly, for each training image and epoch."""
    policy = check_policy(spec.get("augmentation", "none"))
    if policy == "none":
        return np.array([0])
    if policy == "flip_rotate8":
        return np.arange(N_DIHEDRAL)
    return np.arange(1, 1 + n_random_views(spec))


def view_seed(seed: int, image_id: str, view: int) -> np.ndarray:
    """Stateless seed pair of random view `view` of image `image_id`: independent of which
    other images are cached and in what order."""
    return np.array([seed, zlib.crc32(image_id.encode()) * 64 + view], dtype=np.int64)


def _uses_seed(spec: Mapping[str, Any]) -> bool:
    random_views = spec.get("augmentation", "none") in ("resnet50_study", "reference_strong")
    return random_views or spec.get("weights", "imagenet") is None


# --- key --------------------------------------------------------------------------------------

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _SHA_MEMO:
        _SHA_MEMO[memo] = sha256_file(path)
    return _SHA_MEMO[memo]


def weights_identity(spec: Mapping[str, Any], seed: int | None = None) -> str:
    """What the backbone weights are, as a string that changes when they do.

    ``None``: ``random`` and the seed that initialises them. ``imagenet``: the published file
    (name and hash, from ``architectures.KERAS_WEIGHTS``) for keras.applications backbones, the
    ``.pth`` file name for EfficientNet-Lite, else the backbone name and Keras version. Any other
    value is a weights file: its sha256.
    """
    weights = spec.get("weights", "imagenet")
    backbone = str(spec.get("backbone", ""))
    if weights is None:
        if seed is None:
            raise ValueError("randomly initialised backbone: the cache key needs the seed")
        return f"random:seed={int(seed)}"
    if weights == "imagenet":
        published = getattr(architectures(), "KERAS_WEIGHTS", {}).get(backbone)
        if published:
            return f"imagenet:{published['file']}#{published['hash']}"
        lite = re.fullmatch(r"efficientnet_?lite(\d)", backbone.lower())
        if lite:
            from leukbench.efficientnet_lite import imagenet_weights_path

            try:
                return f"imagenet:{imagenet_weights_path(f'lite{lite.group(1)}').name}"
            except FileNotFoundError:
                pass
        return f"imagenet:{backbone}:keras-{keras.__version__}"
    path = Path(str(weights))
    if path.is_file():
        return f"sha256:{_file_sha256(path)}"
    raise ValueError(f"backbone weights {weights!r}: not 'imagenet', null, or an existing file")


def backbone_output(spec: Mapping[str, Any]) -> Any:
    """What shapes the backbone's output besides its weights: the pooling the transfer head
    asks of it (``architectures.head_config``), or the whole head entry when that is unknown."""
    head_config = getattr(architectures(), "head_config", None)
    if head_config is not None:
        return {"pooling": head_config(dict(spec))["pooling"]}
    return {"head": spec.get("head")}


def cache_key(spec: Mapping[str, Any], seed: int | None = None) -> str:
    """Short stable hash of what determines the cached features.

    Backbone, weights identity, input size, the backbone's output pooling, the views
    (augmentation policy, number of random views), the feature dtype, and the seed where it
    matters (random initial weights or random views). The head's layers, learning rate, epochs,
    batch size and (otherwise) the seed are left out, so models that differ only in those share
    one cache.
    """
    policy = check_policy(spec.get("augmentation", "none"))
    parts: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "backbone": spec.get("backbone"),
        "weights": weights_identity(spec, seed),
        "image_size": image_side(spec),
        "output": backbone_output(spec),
        "views": policy,
        "dtype": np.dtype(spec.get("cache_dtype", "float32")).name,
    }
    if policy in ("resnet50_study", "reference_strong"):
        parts["random_views"] = n_random_views(spec)
    if _uses_seed(spec):
        if seed is None:
            raise ValueError("this cache depends on the seed: pass it to cache_key")
        parts["seed"] = int(seed)
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- computing and loading --------------------------------------------------------------------


@dataclass
class FeatureCache:
    """One row per (image, view): ``features[r]`` is view ``views[r]`` of image ``ids[r]``."""

    ids: np.ndarray
    splits: np.ndarray
    views: np.ndarray
    features: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.meta.get("key", ""))

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.features.shape[1:])

    def rows(self, ids: Any, view: int = 0) -> np.ndarray:
        """Row indices of `view` of each of `ids`; an id without that view is an error."""
        lookup = {(i, int(v)): r for r, (i, v) in enumerate(zip(self.ids, self.views, strict=True))}
        wanted = [str(i) for i in ids]
        missing = [i for i in wanted if (i, view) not in lookup]
        if missing:
            raise ValueError(
                f"the feature cache has no view {view} for {len(missing)} images, e.g. "
                f"{missing[:3]}: it was computed for other images; recompute it"
            )
        return np.array([lookup[(i, view)] for i in wanted], dtype=np.int64)


def _cache_rows(
    table: pd.DataFrame, spec: Mapping[str, Any], every_view: bool = False
) -> pd.DataFrame:
    n_train = train_views(spec)
    splits = table["split"].astype(str) if "split" in table else pd.Series("", index=table.index)
    trains = np.ones(len(table), bool) if every_view else splits.to_numpy() == "train"
    n_views = np.where(trains, n_train, 1)
    return pd.DataFrame(
        {
            "id": table["id"].astype(str).to_numpy(),
            "path": table["path"].astype(str).to_numpy(),
            "split": splits.to_numpy(),
            "n_views": n_views,
            "tag": [zlib.crc32(i.encode()) * 64 for i in table["id"].astype(str)],
        }
    )


def _views_dataset(
    rows: pd.DataFrame, spec: Mapping[str, Any], seed: int, batch_size: int, threads: int | None
) -> tf.data.Dataset:
    side = image_side(spec)
    policy = spec.get("augmentation", "none")
    n_train = train_views(spec)
    seed_t = tf.constant(seed, tf.int64)

    def all_views(image: tf.Tensor, tag: tf.Tensor) -> tf.Tensor:
        if policy == "flip_rotate8":
            return tf.cast(dihedral_views(image), tf.float32)
        extra = [augment(image, policy, tf.stack([seed_t, tag + v])) for v in range(1, n_train)]
        return tf.stack([tf.cast(image, tf.float32), *extra])

    def load(path: tf.Tensor, n_views: tf.Tensor, tag: tf.Tensor) -> tf.Tensor:
        image = read_image(path, side)
        if n_train == 1:
            return tf.cast(image, tf.float32)[tf.newaxis]
        return tf.cond(
            n_views > 1,
            lambda: all_views(image, tag),
            lambda: tf.cast(image, tf.float32)[tf.newaxis],
        )

    dataset = tf.data.Dataset.from_tensor_slices(
        (rows["path"].to_numpy(), rows["n_views"].to_numpy(), rows["tag"].to_numpy(np.int64))
    )
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.unbatch().batch(batch_size).prefetch(tf.data.AUTOTUNE)
    if threads is not None:
        options = tf.data.Options()
        options.threading.private_threadpool_size = int(threads)
        dataset = dataset.with_options(options)
    return dataset


def build_seeded_backbone(spec: Mapping[str, Any], seed: int) -> keras.Model:
    """The backbone exactly as the cache saw it: the seed is set right before building, so a
    randomly initialised backbone comes out the same every time."""
    keras.utils.set_random_seed(seed)
    return architectures().build_backbone(dict(spec))


def compute_feature_cache(
    images_df: pd.DataFrame,
    spec: Mapping[str, Any],
    seed: int,
    out_path: str | Path,
    batch_size: int | None = None,
    *,
    threads: int | None = None,
    every_view: bool = False,
) -> dict[str, Any]:
    """Run the backbone over every image (and the training views) and write `out_path`.

    `images_df` needs ``id`` and ``path``; with a ``split`` column, rows whose split is
    ``train`` also get their augmented views. With `every_view`, every row gets them, so the
    cache serves any re-split of the same images. Returns a summary (rows, feature shape,
    seconds).
    """
    check_cacheable(spec)
    check_manifest(images_df, ("id", "path"))
    start = time.perf_counter()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    batch_size = int(batch_size or spec.get("batch_size", 32))
    dtype = np.dtype(spec.get("cache_dtype", "float32"))
    key = cache_key(spec, seed)
    rows = _cache_rows(images_df.reset_index(drop=True), spec, every_view)
    total = int(rows["n_views"].sum())
    backbone = build_seeded_backbone(spec, seed)
    feature_shape = tuple(int(d) for d in backbone.output_shape[1:])
    log.info(
        "feature cache %s: %d images, %d rows of shape %s (%s) -> %s",
        key,
        len(rows),
        total,
        feature_shape,
        dtype.name,
        out_path,
    )
    scratch = out_path.with_name(out_path.name + ".features.npy")
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        features = np.lib.format.open_memmap(
            scratch, mode="w+", dtype=dtype, shape=(total, *feature_shape)
        )
        side = image_side(spec)
        # One trace for every batch size (the last batch is smaller); inference mode.
        extract = tf.function(
            lambda x: backbone(x, training=False),
            input_signature=[tf.TensorSpec((None, side, side, 3), tf.float32)],
        )
        done = 0
        for batch in _views_dataset(rows, spec, seed, batch_size, threads):
            out = extract(batch).numpy()
            features[done : done + len(out)] = out.astype(dtype)
            done += len(out)
        if done != total:
            raise RuntimeError(f"feature cache: expected {total} rows, computed {done}")
        features.flush()
        repeats = rows["n_views"].to_numpy()
        views = np.concatenate([np.arange(n) for n in repeats]).astype(np.int16)
        meta = {
            "key": key,
            "format": CACHE_FORMAT,
            "seed": int(seed),
            "backbone": spec.get("backbone"),
            "weights": weights_identity(spec, seed),
            "image_size": image_side(spec),
            "augmentation": spec.get("augmentation", "none"),
            "train_views": train_views(spec),
            "sampled_views": sampled_views(spec).tolist(),
            "feature_shape": list(feature_shape),
            "dtype": dtype.name,
        }
        with open(partial, "wb") as handle:
            np.savez(
                handle,
                ids=np.repeat(rows["id"].to_numpy().astype(str), repeats),
                splits=np.repeat(rows["split"].to_numpy().astype(str), repeats),
                views=views,
                features=features,
                meta=np.array(json.dumps(meta)),
            )
        del features
        os.replace(partial, out_path)
    finally:
        scratch.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    log.info("feature cache %s written in %.1f s", key, seconds)
    return {
        "key": key,
        "rows": total,
        "images": len(rows),
        "feature_shape": list(feature_shape),
        "dtype": dtype.name,
        "seconds": seconds,
    }


def _stored_member_memmap(path: Path, member: str) -> np.ndarray:
    """Memory-map an uncompressed ``.npy`` member of an ``.npz`` in place (read-only)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{member} is compressed: cannot memory-map it")
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the local file header; its name and extra field follow
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{member}: bad local zip header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(handle)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = reader(handle)
        offset = handle.tell()
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def load_feature_cache(path: str | Path, *, mmap: bool = True) -> FeatureCache:
    """Read a cache written by :func:`compute_feature_cache`.

    With `mmap` (default) the features stay on disk, memory-mapped (the file is an uncompressed
    zip), and only the rows used are read: caches of un-pooled feature maps can exceed memory.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature cache not found: {path}")
    try:
        with np.load(path, allow_pickle=False, mmap_mode=None) as data:
            names = set(data.files)
            missing = {"ids", "splits", "views", "features", "meta"} - names
            if missing:
                raise KeyError(f"members {sorted(missing)} missing")
            features = _stored_member_memmap(path, "features.npy") if mmap else data["features"]
            return FeatureCache(
                ids=data["ids"],
                splits=data["splits"],
                views=data["views"].astype(np.int64),
                features=features,
                meta=json.loads(str(data["meta"])),
            )
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable feature cache ({exc})") from exc
