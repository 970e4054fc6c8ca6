"""Classify image files with a trained deep model: per image, the class and its confidence.

Like study 001's app, but for any saved benchmark model::

    python -m leukbench.predict results/.../model.keras cell1.png cell2.tif
    python workflow/scripts/leukbench/predict.py results/.../model.keras cell1.png

The class names, image size and output type come from ``labels.json`` next to the model
(:func:`write_model_sidecar`, written when the model is saved). Images are read and resized with
:func:`leukbench.images.load_rgb`, exactly as the training pipeline does; the model holds the rest
of its preprocessing. An unreadable image is reported (file and reason) and the others are still
classified; the exit status is then 1. A missing or unloadable model exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `leukbench` importable, not its members
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import numpy as np
import pandas as pd

from leukbench.images import ImageError, load_rgb

SIDECAR = "labels.json"
BATCH = 32


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_name(SIDECAR)


def write_model_sidecar(
    model_path: str | Path, classes: Sequence[str], spec: Mapping[str, Any]
) -> Path:
    """Write ``labels.json`` next to `model_path`: classes, image size, output type, spec."""
    size = spec["image_size"]
    side = int(size) if isinstance(size, int | np.integer) else int(next(iter(size)))
    data = {
        "classes": list(classes),
        "image_size": side,
        "output": "sigmoid" if len(classes) == 2 else "softmax",
        "positive_class": classes[1] if len(classes) == 2 else None,
        "family": spec.get("family"),
        "spec": dict(spec),
    }
    path = sidecar_path(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def read_model_sidecar(model_path: str | Path) -> dict[str, Any] | None:
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def load_model(model_path: str | Path) -> Any:
    """Load a ``.keras`` model, with the benchmark's custom layers registered."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if importlib.util.find_spec("leukbench.deep.architectures") is not None:
        importlib.import_module("leukbench.deep.architectures")  # registers custom layers
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors, ...
        raise ValueError(
            f"{path}: cannot load as a Keras model ({type(exc).__name__}: {exc})"
        ) from exc


def _model_classes(
    model: Any, sidecar: Mapping[str, Any] | None, classes: Sequence[str] | None, model_path: Path
) -> tuple[list[str], int]:
    if classes is None:
        if sidecar is None:
            raise FileNotFoundError(
                f"no {SIDECAR} next to {model_path}: the class names are unknown (pass classes)"
            )
        classes = sidecar["classes"]
    classes = list(classes)
    units = int(model.output_shape[-1])
    expected = 1 if len(classes) == 2 else len(classes)
    if units != expected:
        raise ValueError(
            f"{model_path}: the model has {units} outputs, {len(classes)} classes given"
        )
    side = int(model.input_shape[1])
    if sidecar is not None and int(sidecar.get("image_size", side)) != side:
        raise ValueError(
            f"{model_path}: {SIDECAR} says image size {sidecar['image_size']}, "
            f"the model takes {side}"
        )
    return classes, side


def predict_images(
    model_path: str | Path,
    paths: Sequence[str | Path],
    classes: Sequence[str] | None = None,
    *,
    model: Any = None,
    batch_size: int = BATCH,
) -> pd.DataFrame:
    """One row per path: path, pred, confidence, prob_<class>..., error.

    A file that cannot be read gets its reason in ``error`` (empty otherwise) and no prediction.
    `classes` overrides the sidecar's; `model` reuses an already loaded model.
    """
    model_path = Path(model_path)
    if model is None:
        model = load_model(model_path)
    classes, side = _model_classes(model, read_model_sidecar(model_path), classes, model_path)
    rows: list[dict[str, Any]] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        raw = np.asarray(model.predict(np.stack([a for _, a in pending]), verbose=0), np.float64)
        if len(classes) == 2:
            p = raw.reshape(len(raw), -1)[:, -1]
            probs = np.column_stack([1.0 - p, p])
        else:
            probs = raw.reshape(len(raw), len(classes))
        for (row, _), prob in zip(pending, probs, strict=True):
            best = int(np.argmax(prob))
            rows[row] |= {"pred": classes[best], "confidence": float(prob[best])}
            rows[row] |= {f"prob_{c}": float(v) for c, v in zip(classes, prob, strict=True)}
        pending.clear()

    for path in paths:
        row: dict[str, Any] = {"path": str(path), "pred": "", "confidence": np.nan, "error": ""}
        row |= {f"prob_{c}": np.nan for c in classes}
        rows.append(row)
        try:
            if not Path(path).is_file():
                raise ImageError(f"{path}: no such file")
            pending.append((len(rows) - 1, load_rgb(path, (side, side)).astype(np.float32)))
        except ImageError as exc:
            row["error"] = str(exc)
        if len(pending) >= batch_size:
            flush()
    flush()
    columns = ["path", "pred", "confidence", *(f"prob_{c}" for c in classes), "error"]
    return pd.DataFrame(rows, columns=columns)


def format_prediction(row: Mapping[str, Any], classes: Sequence[str]) -> str:
    scores = "  ".join(f"{c} {row[f'prob_{c}']:.3f}" for c in classes)
    return f"{row['path']}: {row['pred']} (confidence {row['confidence']:.3f})\n    {scores}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m leukbench.predict",
        description="Classify blood-smear images with a trained leukbench model (.keras).",
    )
    parser.add_argument("model", help="model file; labels.json must sit next to it")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--classes", help="comma-separated class names (overrides labels.json)")
    parser.add_argument("--tsv", help="also write the predictions table here")
    args = parser.parse_args(argv)
    classes = args.classes.split(",") if args.classes else None
    try:
        table = predict_images(args.model, args.images, classes)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [c[len("prob_") :] for c in table.columns if c.startswith("prob_")]
    for row in table.to_dict("records"):
        if row["error"]:
            print(f"{row['path']}: ERROR {row['error']}", file=sys.stderr)
        else:
            print(format_prediction(row, names))
    if args.tsv:
        Path(args.tsv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.tsv, sep="\t", index=False, na_rep="NaN")
    failed = int((table["error"] != "").sum())
    if failed:
        print(f"{failed} of {len(table)} images could not be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
