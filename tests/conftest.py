"""Shared fixtures: small synthetic images and `<variant>/<class>/<file>` dataset trees."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["Benign", "Early", "Pre", "Pro"]
VARIANTS = ["Original", "Segmented"]

# A purple whose skimage rgb2hsv is H=0.75, S=0.67, V=0.71: inside the published range.
PURPLE = (120, 60, 180)
# A pale pink smear background: S=0.08, outside the range.
BACKGROUND = (240, 220, 230)

ImageFactory = Callable[..., Path]
DatasetFactory = Callable[..., Path]


def smooth_rgb(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random colour image (bicubic-upsampled 4x4 noise).

    Smooth images keep their perceptual hash under re-encoding, and two seeds give images whose
    hashes are far apart, which is what the duplicate tests need.
    """
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def disc_mask(size: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disc of `radius` pixels around (row, column) `centre` on a size x size grid."""
    rows, cols = np.mgrid[0:size, 0:size]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def smear_rgb(
    size: int = 64, centre: tuple[float, float] | None = None, radius: float | None = None
) -> np.ndarray:
    """A pale background with one purple disc: a caricature of a stained leukocyte."""
    centre = centre if centre is not None else ((size - 1) / 2, (size - 1) / 2)
    radius = radius if radius is not None else size / 4
    rgb = np.empty((size, size, 3), dtype=np.uint8)
    rgb[...] = BACKGROUND
    rgb[disc_mask(size, centre, radius)] = PURPLE
    return rgb


def save_image(image: np.ndarray | Image.Image, path: Path, **save_kwargs: object) -> Path:
    """Write an array or PIL image to `path` (format from the extension), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, **save_kwargs)
    return path


def encoded_bytes(image: np.ndarray | Image.Image, fmt: str, **save_kwargs: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def write_truncated(image: np.ndarray, path: Path, fmt: str, keep: float = 0.6) -> Path:
    """Encode `image` for real, then keep only the first `keep` fraction of the bytes."""
    data = encoded_bytes(image, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture
def image_file(tmp_path: Path) -> ImageFactory:
    """Write one image under tmp_path: image_file("a.png", array_or_pil, **save_kwargs)."""

    def write(name: str, image: np.ndarray | Image.Image, **save_kwargs: object) -> Path:
        return save_image(image, tmp_path / name, **save_kwargs)

    return write


@pytest.fixture
def dataset_factory(tmp_path: Path) -> DatasetFactory:
    """Build a `<root>/<variant>/<class>/<class>-NNN.<ext>` tree of distinct smooth images.

    The same file names (and pixel content) appear in every variant, as in the Kaggle archive.
    Returns the root folder.
    """

    def build(
        variants: Sequence[str] = tuple(VARIANTS),
        classes: Sequence[str] = tuple(CLASSES),
        n_per_class: int = 3,
        size: int = 32,
        ext: str = ".png",
        root_name: str = "data",
    ) -> Path:
        root = tmp_path / root_name
        for variant in variants:
            for c, cls in enumerate(classes):
                for n in range(n_per_class):
                    rgb = smooth_rgb(seed=1000 * c + n, size=size)
                    save_image(rgb, root / variant / cls / f"{cls}-{n:03d}{ext}")
        return root

    return build
