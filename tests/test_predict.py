"""Classifying image files with a saved model: table, command line, and clear failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_deep_train import ARCH, cell_image, make_spec, standin_architectures, synthetic_tables

from leukbench.deep.train import (
    train_deep,
    write_model_sidecar,  # as the entry script imports it
)
from leukbench.predict import main, predict_images, read_model_sidecar

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
CLASSES = ["Benign", "Early", "Pre"]


@dataclass
class SavedModel:
    path: Path
    predictions: pd.DataFrame
    images: pd.DataFrame


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SavedModel]:
    """A 1-epoch stand-in CNN (built-in layers only, so other processes can load it)."""
    root = tmp_path_factory.mktemp("predict")
    images, splits = synthetic_tables(root / "img", CLASSES, n_per_class=4)
    spec = make_spec("cnn")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, ARCH, standin_architectures())
        model, predictions, _, _ = train_deep(images, splits, CLASSES, spec, seed=1)
    path = root / "model" / "model.keras"
    path.parent.mkdir()
    model.save(path)
    write_model_sidecar(path, CLASSES, spec)
    yield SavedModel(path, predictions, images)


def test_sidecar_records_classes_and_image_size(saved: SavedModel) -> None:
    sidecar = read_model_sidecar(saved.path)
    assert sidecar is not None
    assert sidecar["classes"] == CLASSES
    assert sidecar["image_size"] == 32 and sidecar["output"] == "softmax"
    assert json.loads((saved.path.parent / "labels.json").read_text()) == sidecar


def test_predictions_match_the_training_pipeline(saved: SavedModel) -> None:
    paths = saved.images["path"].tolist()
    table = predict_images(saved.path, paths)
    assert list(table.columns) == ["path", "pred", "confidence"] + [
        f"prob_{c}" for c in CLASSES
    ] + ["error"]
    assert (table["error"] == "").all()
    probs = table[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(table["confidence"], probs.max(axis=1))
    expected = saved.images[["id"]].merge(saved.predictions, on="id")
    np.testing.assert_allclose(probs, expected.filter(like="prob_").to_numpy(), atol=1e-6)
    assert table["pred"].tolist() == expected["pred"].tolist()


def test_other_sizes_and_modes_are_resized_like_training(saved: SavedModel, tmp_path: Path) -> None:
    big = Image.fromarray(cell_image(1, 0, side=96))
    big.save(tmp_path / "big.png")
    big.convert("RGBA").save(tmp_path / "big_rgba.png")  # opaque alpha: same pixels
    table = predict_images(saved.path, [tmp_path / "big.png", tmp_path / "big_rgba.png"])
    np.testing.assert_allclose(
        table.filter(like="prob_").iloc[0], table.filter(like="prob_").iloc[1], atol=1e-6
    )


def test_cli_prints_class_and_confidences(
    saved: SavedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    path = saved.images["path"].iloc[0]
    assert main([str(saved.path), path]) == 0
    out = capsys.readouterr().out
    row = predict_images(saved.path, [path]).iloc[0]
    assert f"{path}: {row['pred']} (confidence {row['confidence']:.3f})" in out
    for cls in CLASSES:
        assert f"{cls} {row[f'prob_{cls}']:.3f}" in out


def test_cli_reports_unreadable_images_and_classifies_the_rest(
    saved: SavedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = saved.images["path"].iloc[0]
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(good).read_bytes()[:80])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    tsv = tmp_path / "out.tsv"
    argv = [str(saved.path), str(truncated), good, str(text), str(missing), "--tsv", str(tsv)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert f"{good}: " in captured.out and "confidence" in captured.out
    for bad in (truncated, text, missing):
        assert f"{bad}: ERROR" in captured.err
        assert str(bad) not in captured.out
    assert "3 of 4 images could not be read" in captured.err
    table = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    assert table["error"].astype(bool).tolist() == [True, False, True, True]


def test_unknown_or_broken_model_fails_clearly(
    saved: SavedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = saved.images["path"].iloc[0]
    assert main([str(tmp_path / "nope.keras"), image]) == 2
    assert f"model file not found: {tmp_path / 'nope.keras'}" in capsys.readouterr().err
    junk = tmp_path / "junk.keras"
    junk.write_text("definitely not a zip archive")
    assert main([str(junk), image]) == 2
    assert f"{junk}: cannot load as a Keras model" in capsys.readouterr().err


def test_model_without_sidecar_needs_class_names(saved: SavedModel, tmp_path: Path) -> None:
    lonely = tmp_path / "model.keras"
    shutil.copy(saved.path, lonely)
    image = saved.images["path"].iloc[0]
    with pytest.raises(FileNotFoundError, match=r"no labels\.json next to"):
        predict_images(lonely, [image])
    assert predict_images(lonely, [image], classes=["x", "y", "z"])["pred"].iloc[0] in "xyz"
    with pytest.raises(ValueError, match="3 outputs, 2 classes"):
        predict_images(lonely, [image], classes=["x", "y"])


def test_command_line_entry_points(saved: SavedModel, tmp_path: Path) -> None:
    """``python -m leukbench.predict`` and running the file directly."""
    good = saved.images["path"].iloc[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "TF_CPP_MIN_LOG_LEVEL": "3"}
    module = subprocess.run(
        [sys.executable, "-m", "leukbench.predict", str(saved.path), good, str(broken)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert module.returncode == 1, module.stderr
    assert f"{good}: " in module.stdout and "confidence" in module.stdout
    assert f"{broken}: ERROR" in module.stderr
    env.pop("PYTHONPATH")
    script = subprocess.run(
        [sys.executable, str(SCRIPTS / "leukbench" / "predict.py"), str(saved.path), good],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.splitlines()[0] == module.stdout.splitlines()[0]
