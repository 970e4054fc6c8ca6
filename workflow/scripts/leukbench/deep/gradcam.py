"""Grad-CAM heat maps for the saved deep models (cnn, transfer, hybrid) and a test-set gallery.

Grad-CAM (Selvaraju et al., 2017): the gradient of a class score with respect to a convolutional
feature map ``A`` (h x w x C), averaged over the positions, weights the channels;
``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the input size and divided by its maximum, is the
heat map in ``[0, 1]``.

Feature map. By default the last layer, in Keras' layer order and looking inside nested
sub-models depth first, whose output is a 4-D map, other than input and pooling layers (VGG16's
``block5_pool`` gives way to ``block5_conv3``); a layer with a 1 x 1 map is taken only when no
larger map exists (its heat map would be flat). This is the CNN's last conv block, the ImageNet
network's last map inside the transfer model's ``backbone`` sub-model, and for the hybrid, whose
``backbone`` comes after the U-Net in layer order, the backbone's map too; pass
``layer="unet_dec3_conv2"`` for the U-Net branch. ``layer`` is a layer name (searched in every
nested model, it must be unique) or a ``/``-separated path such as
``"backbone/efficientnet_lite0/head_relu6"``.

Nested models. A layer inside a nested Functional model has no tensor in the outer graph, so
``keras.Model(model.inputs, layer.output)`` cannot be built. :func:`tapped_model` re-wires
instead: it re-runs the outer graph (``keras.models.clone_model`` with the same layer objects,
hence the same weights) and, where a nested model is called, calls a version of it that also
returns the wanted inner tensors (built the same way, recursively).

Class score. The pre-activation of the output Dense layer (``predictions``), as the paper uses
logits: ``z_c`` for a softmax; for the single sigmoid unit, ``z`` for class 1 and ``-z`` for class
0, so the two classes get different maps.

Input images are raw RGB ``(S, S, 3)`` in ``[0, 255]`` read with :func:`leukbench.images.load_rgb`,
as in training and :mod:`leukbench.predict`; the models hold their own preprocessing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import matplotlib
import numpy as np
import pandas as pd
import tensorflow as tf

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from leukbench.deep.architectures import HsvMask
from leukbench.images import IMAGE_EXTENSIONS, load_rgb
from leukbench.predict import load_model, read_model_sidecar
from leukbench.smk import read_tsv

__all__ = [
    "GALLERY_DPI",
    "PANEL_INCHES",
    "GradCam",
    "GradCamResult",
    "find_feature_layer",
    "gradcam_gallery",
    "overlay_heatmap",
    "select_gallery_images",
    "tapped_model",
]

MODEL_FILE = "model.keras"
PANEL_INCHES = (1.8, 2.1)  # width, height of one gallery panel (image, mask or heat map)
GALLERY_DPI = 100
# Never the Grad-CAM map: inputs, whole nested models, padding, and pooling (the map before it
# is finer).
_NOT_FEATURE_MAPS = (
    keras.layers.InputLayer,
    keras.Model,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.ZeroPadding2D,
)

LayerPath = tuple[str, ...]
Tap = tuple[LayerPath, str]  # (path of layer names, "input" or "output")


# --- graph helpers ----------------------------------------------------------------------------


def _walk(model: keras.Model, prefix: LayerPath = ()) -> Iterator[tuple[LayerPath, Any]]:
    """Every layer with its path of names, nested models before their own layers, depth first."""
    for layer in model.layers:
        path = (*prefix, layer.name)
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer, path)


def _resolve(model: keras.Model, path: LayerPath) -> Any:
    layer: Any = model
    for name in path:
        layer = layer.get_layer(name)
    return layer


def _is_feature_map(layer: Any) -> bool:
    if isinstance(layer, _NOT_FEATURE_MAPS):
        return False
    return len(layer.output.shape) == 4


def find_feature_layer(model: keras.Model, layer: str | None = None) -> LayerPath:
    """Path of the feature map Grad-CAM differentiates (see the module docstring for the rule).

    `layer` overrides the search: a ``/``-separated path or a name unique among all layers.
    """
    if layer is not None:
        if "/" in layer:
            path = tuple(layer.split("/"))
            _resolve(model, path)  # raises ValueError for an unknown name
            return path
        hits = [p for p, lay in _walk(model) if lay.name == layer]
        if len(hits) != 1:
            where = ", ".join("/".join(p) for p in hits) or "nowhere"
            raise ValueError(f"layer {layer!r} must occur exactly once; found {where}")
        return hits[0]
    maps = [(p, lay) for p, lay in _walk(model) if _is_feature_map(lay)]
    if not maps:
        raise ValueError(f"{model.name} has no 4-D feature map for Grad-CAM")
    larger = [(p, lay) for p, lay in maps if np.prod(lay.output.shape[1:3]) > 1]
    return (larger or maps)[-1][0]


def _output_dense(model: keras.Model) -> LayerPath:
    """Path of the output Dense layer (the last layer, looking into a nested head)."""
    path, last = (), model
    while isinstance(last, keras.Model):
        last = last.layers[-1]
        path = (*path, last.name)
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    if not isinstance(last, keras.layers.Dense) or activation not in ("sigmoid", "softmax"):
        raise ValueError(
            f"{model.name}: Grad-CAM needs a Dense sigmoid/softmax output layer, "
            f"found {type(last).__name__} {'/'.join(path)}"
        )
    return path


def tapped_model(model: keras.Model, taps: Sequence[Tap]) -> keras.Model:
    """A model with outputs ``[*tapped tensors, *model.outputs]`` sharing `model`'s layers.

    Each tap is (path of layer names, ``"input"`` or ``"output"``); a path of more than one name
    reaches into nested models (see the module docstring).
    """
    local: dict[str, list[tuple[int, str]]] = {}
    nested: dict[str, list[tuple[int, Tap]]] = {}
    for i, (path, kind) in enumerate(taps):
        if kind not in ("input", "output"):
            raise ValueError(f"tap kind must be 'input' or 'output', got {kind!r}")
        if len(path) == 1:
            local.setdefault(path[0], []).append((i, kind))
        else:
            nested.setdefault(path[0], []).append((i, (path[1:], kind)))
    for name in (*local, *nested):
        model.get_layer(name)  # fail early on an unknown name
    inner = {
        name: (tapped_model(model.get_layer(name), [t for _, t in items]), [i for i, _ in items])
        for name, items in nested.items()
    }
    found: dict[int, Any] = {}

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if layer.name in inner:
            sub, indices = inner[layer.name]
            outputs = sub(*args, **kwargs)
            found.update(zip(indices, outputs[: len(indices)], strict=True))
            rest = outputs[len(indices) :]
            return rest[0] if len(rest) == 1 else rest
        outputs = layer(*args, **kwargs)
        for i, kind in local.get(layer.name, []):
            found[i] = args[0] if kind == "input" else outputs
        return outputs

    # The identity clone_function keeps the original layer objects (and weights).
    rewired = keras.models.clone_model(
        model, clone_function=lambda layer: layer, call_function=call
    )
    missing = [i for i in range(len(taps)) if i not in found]
    if missing:
        raise ValueError(f"taps {[taps[i] for i in missing]} are not on the path to the output")
    outputs = [found[i] for i in range(len(taps))] + list(rewired.outputs)
    # A one-input model takes a bare tensor, not a one-element list, like the original.
    inputs = rewired.inputs[0] if len(rewired.inputs) == 1 else rewired.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_tapped")


# --- Grad-CAM ---------------------------------------------------------------------------------


def overlay_heatmap(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, cmap: str = "jet"
) -> np.ndarray:
    """uint8 RGB: `heatmap` (H x W in [0, 1]) colour-mapped and blended over `image`."""
    colours = matplotlib.colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    blend = (1.0 - alpha) * np.asarray(image, np.float64) + alpha * colours
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class GradCamResult:
    """One explained image: heat map and overlay at the input size, class and probabilities."""

    heatmap: np.ndarray  # (H, W) float32 in [0, 1]
    overlay: np.ndarray  # (H, W, 3) uint8
    class_index: int  # the class explained
    probabilities: np.ndarray  # (n_classes,) the model's probabilities
    mask: np.ndarray | None  # (H, W) float32 0/1: the hybrid's in-graph HSV mask, else None
    layer: str  # path of the feature map


class GradCam:
    """Grad-CAM for one Keras model; builds the re-wired model once, then explains images.

    `model` is a loaded model (see :meth:`from_dir`); `layer` overrides the feature map
    (:func:`find_feature_layer`).
    """

    def __init__(self, model: keras.Model, layer: str | None = None) -> None:
        self.model = model
        self.feature_path = find_feature_layer(model, layer)
        self.dense_path = _output_dense(model)
        self.dense = _resolve(model, self.dense_path)
        masks = [p for p, lay in _walk(model) if isinstance(lay, HsvMask)]
        self.mask_path = masks[0] if masks else None
        taps: list[Tap] = [(self.feature_path, "output"), (self.dense_path, "input")]
        if self.mask_path is not None:
            taps.append((self.mask_path, "output"))
        self.tapped = tapped_model(model, taps)
        self.image_size = int(model.input_shape[1])
        self.n_classes = max(2, int(model.output_shape[-1]))
        self.classes: list[str] | None = None

    @classmethod
    def from_dir(cls, model_dir: str | Path, layer: str | None = None) -> GradCam:
        """Load ``model.keras`` (a directory holding it, or the file) and its ``labels.json``."""
        path = Path(model_dir)
        path = path / MODEL_FILE if path.is_dir() else path
        explainer = cls(load_model(path), layer)
        sidecar = read_model_sidecar(path)
        if sidecar is not None:
            explainer.classes = list(sidecar["classes"])
        return explainer

    def forward(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Re-wired forward pass (inference mode): feature map, logits, probabilities, mask."""
        outputs = self.tapped(np.asarray(images, np.float32), training=False)
        result = {
            "features": outputs[0].numpy(),
            "logits": self._logits(outputs[1]).numpy(),
            "probabilities": self._probabilities(outputs[-1].numpy()),
        }
        if self.mask_path is not None:
            result["mask"] = outputs[2].numpy()[..., 0]
        return result

    def _logits(self, dense_input: tf.Tensor) -> tf.Tensor:
        logits = tf.matmul(dense_input, self.dense.kernel)
        return logits + self.dense.bias if self.dense.use_bias else logits

    def _probabilities(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, np.float64).reshape(len(raw), -1)
        return np.column_stack([1.0 - raw[:, 0], raw[:, 0]]) if raw.shape[1] == 1 else raw

    def _score(self, logits: tf.Tensor, class_index: int) -> tf.Tensor:
        if logits.shape[-1] == 1:
            return logits[:, 0] if class_index == 1 else -logits[:, 0]
        return logits[:, class_index]

    def explain(self, image: np.ndarray, class_index: int | None = None) -> GradCamResult:
        """Grad-CAM of one raw RGB image ``(S, S, 3)`` in ``[0, 255]`` for `class_index`
        (default: the predicted class)."""
        image = np.asarray(image)
        side = self.image_size
        if image.shape != (side, side, 3):
            raise ValueError(f"image must be ({side}, {side}, 3), got {image.shape}")
        x = tf.convert_to_tensor(image[np.newaxis], tf.float32)
        with tf.GradientTape() as tape:
            outputs = self.tapped(x, training=False)
            features = outputs[0]
            logits = self._logits(outputs[1])
            probs = self._probabilities(outputs[-1].numpy())[0]
            target = int(np.argmax(probs)) if class_index is None else int(class_index)
            if not 0 <= target < self.n_classes:
                raise ValueError(f"class_index must be in 0..{self.n_classes - 1}, got {target}")
            score = self._score(logits, target)
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, (side, side), method="bilinear")[0, ..., 0].numpy()
        peak = float(cam.max())
        heatmap = np.clip(cam / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(cam)
        heatmap = heatmap.astype(np.float32)
        mask = outputs[2].numpy()[0, ..., 0].astype(np.float32) if self.mask_path else None
        return GradCamResult(
            heatmap=heatmap,
            overlay=overlay_heatmap(image, heatmap),
            class_index=target,
            probabilities=probs,
            mask=mask,
            layer="/".join(self.feature_path),
        )

    def explain_file(self, path: str | Path, class_index: int | None = None) -> GradCamResult:
        """:meth:`explain` of an image file, read and resized as in training."""
        side = self.image_size
        return self.explain(load_rgb(path, (side, side)), class_index)


# --- gallery ----------------------------------------------------------------------------------


def select_gallery_images(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    per_class: int = 3,
    seed: int = 0,
    split: str = "test",
) -> pd.DataFrame:
    """Per true class (in `classes` order), up to `per_class` correct then up to `per_class`
    wrong images of `split`, drawn with `seed` from the rows sorted by id (so the choice does not
    depend on the table's row order). Columns: id, true, pred, prob (of the predicted class),
    correct."""
    missing = [c for c in ("id", "true", "pred", "split") if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    table = predictions[predictions["split"] == split].sort_values("id", kind="stable")
    rng = np.random.default_rng(seed)
    picked = []
    for cls in classes:
        rows = table[table["true"] == cls]
        for correct in (True, False):
            group = rows[(rows["pred"] == rows["true"]) == correct]
            take = np.sort(rng.permutation(len(group))[:per_class])
            picked.append(group.iloc[take].assign(correct=correct))
    chosen = pd.concat(picked, ignore_index=True)
    chosen["prob"] = [float(row[f"prob_{row['pred']}"]) for _, row in chosen.iterrows()]
    return chosen[["id", "true", "pred", "prob", "correct"]]


def _image_resolver(images: Any) -> Any:
    """id -> image path, from a mapping, an (id, path) table or a variant root folder."""
    if isinstance(images, pd.DataFrame):
        if "variant" in images.columns and images["variant"].nunique() > 1:
            raise ValueError("the image table holds several variants: pass one variant's rows")
        if images["id"].duplicated().any():
            raise ValueError("the image table lists ids more than once")
        images = dict(zip(images["id"], images["path"], strict=True))
    if isinstance(images, Mapping):
        return lambda image_id: Path(images[image_id])
    root = Path(images)
    if not root.is_dir():
        raise ValueError(f"images must be a mapping, an (id, path) table or a folder: {root}")

    def find(image_id: str) -> Path:
        # ids are paths relative to the variant folder without their extension (leukbench.ingest)
        hits = sorted(
            p
            for p in root.glob(f"{image_id}.*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem == Path(image_id).name
        )
        if not hits:
            raise FileNotFoundError(f"no image file for id {image_id!r} under {root}")
        return hits[0]

    return find


def _read_predictions(predictions: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(predictions, pd.DataFrame):
        return predictions
    return read_tsv(predictions, dtype={"id": str, "true": str, "pred": str})


def _panel_titles(row: Any, has_mask: bool) -> list[str]:
    mark = "" if row.correct else " ✗"
    first = f"true {row.true}\npred {row.pred}{mark} p={row.prob:.2f}"
    return [first, "HSV mask", "Grad-CAM"] if has_mask else [first, "Grad-CAM"]


def gradcam_gallery(
    model_dir: str | Path,
    predictions: pd.DataFrame | str | Path,
    images_root_or_paths: Mapping[str, str | Path] | pd.DataFrame | str | Path,
    out_png: str | Path,
    per_class: int = 3,
    seed: int = 0,
    *,
    split: str = "test",
    layer: str | None = None,
) -> pd.DataFrame:
    """Render one PNG grid of Grad-CAM explanations of `split` images; return the selection.

    `model_dir`: folder with ``model.keras`` and ``labels.json`` (or the ``.keras`` file).
    `predictions`: the model's ``predictions.tsv`` (id, true, split, pred, prob_<class>) or its
    table. `images_root_or_paths`: id -> path mapping, a table with id and path (one variant of
    the manifest), or the variant's root folder (``<root>/<id>.<ext>``).

    One row per true class that has picks (:func:`select_gallery_images`): `per_class` correct
    then `per_class` wrong slots, each showing image | heat map overlay (image | HSV mask |
    overlay for a hybrid), titled with the true and predicted class and the predicted class's
    probability from `predictions`; the heat map explains that predicted class. Images are read
    one at a time. The figure is ``PANEL_INCHES`` per panel at ``GALLERY_DPI``. The returned
    selection adds path and the explained layer.
    """
    explainer = GradCam.from_dir(model_dir, layer)
    classes = explainer.classes
    table = _read_predictions(predictions)
    if classes is None:
        classes = [c.removeprefix("prob_") for c in table.columns if c.startswith("prob_")]
    chosen = select_gallery_images(table, classes, per_class, seed, split)
    resolve = _image_resolver(images_root_or_paths)
    chosen["path"] = [str(resolve(i)) for i in chosen["id"]]
    chosen["layer"] = "/".join(explainer.feature_path)

    has_mask = explainer.mask_path is not None
    panels = 3 if has_mask else 2
    rows = [c for c in classes if (chosen["true"] == c).any()]
    n_rows, n_cols = max(1, len(rows)), 2 * per_class * panels
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(n_cols * PANEL_INCHES[0], n_rows * PANEL_INCHES[1]),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for r, cls in enumerate(rows):
        of_class = chosen[chosen["true"] == cls]
        for correct in (True, False):
            group = of_class[of_class["correct"] == correct]
            for k, row in enumerate(group.itertuples(index=False)):
                start = ((0 if correct else per_class) + k) * panels
                result = explainer.explain_file(row.path, classes.index(row.pred))
                shown = [load_rgb(row.path, (explainer.image_size,) * 2)]
                if has_mask:
                    shown.append(result.mask)
                shown.append(result.overlay)
                for j, (picture, title) in enumerate(
                    zip(shown, _panel_titles(row, has_mask), strict=True)
                ):
                    ax = axes[r, start + j]
                    if picture.ndim == 2:
                        ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0)
                    else:
                        ax.imshow(picture)
                    ax.set_title(title, fontsize=7)
    if not rows:
        axes[0, 0].text(0.5, 0.5, f"no {split} images", ha="center", va="center")
    fig.suptitle(
        f"Grad-CAM ({chosen['layer'].iloc[0] if len(chosen) else ''}): "
        f"{per_class} correct | {per_class} wrong per class",
        fontsize=9,
    )
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=GALLERY_DPI)
    plt.close(fig)
    return chosen
