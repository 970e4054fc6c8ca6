"""HSV colour-threshold segmentation of stained leukocytes, with morphological clean-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.morphology import disk, opening, remove_small_holes, remove_small_objects

from leukbench.images import load_rgb, to_hsv

STATS_COLUMNS = ["id", "label", "foreground_fraction", "flagged", "error"]


@dataclass(frozen=True)
class HsvThresholds:
    """Hue range and saturation/value floors, all on a [0, 1] scale."""

    hue_min: float = 0.7
    hue_max: float = 0.8
    saturation_min: float = 0.5
    value_min: float = 0.4


@dataclass(frozen=True)
class Cleanup:
    opening_radius: int = 1
    min_object_px: int = 30
    max_hole_px: int = 64


def hsv_mask(rgb: np.ndarray, thresholds: HsvThresholds, cleanup: Cleanup) -> np.ndarray:
    """Boolean foreground mask of pixels inside the HSV range, then opened and tidied."""
    hsv = to_hsv(rgb)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    if thresholds.hue_min <= thresholds.hue_max:
        in_hue = (hue >= thresholds.hue_min) & (hue <= thresholds.hue_max)
    else:  # a range that wraps through red, e.g. 0.9..0.1
        in_hue = (hue >= thresholds.hue_min) | (hue <= thresholds.hue_max)
    mask = in_hue & (sat >= thresholds.saturation_min) & (val >= thresholds.value_min)
    if cleanup.opening_radius > 0:
        mask = opening(mask, disk(cleanup.opening_radius))
    if cleanup.min_object_px > 0:
        # max_size removes objects of that size or fewer; min_object_px is the smallest one kept
        mask = remove_small_objects(mask, max_size=cleanup.min_object_px - 1)
    if cleanup.max_hole_px > 0:
        mask = remove_small_holes(mask, max_size=cleanup.max_hole_px)
    return mask


def apply_mask(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], rgb, 0).astype(np.uint8)


@dataclass(frozen=True)
class SegmentJob:
    """Everything one worker needs to segment one image and write its outputs."""

    thresholds: HsvThresholds
    cleanup: Cleanup
    min_foreground: float
    mask_dir: Path
    segmented_dir: Path
    size: tuple[int, int] | None = None

    def __call__(self, item: tuple[str, str, str]) -> dict:
        image_id, label, path = item
        try:
            rgb = load_rgb(path, self.size)
            mask = hsv_mask(rgb, self.thresholds, self.cleanup)
            for folder, array in (
                (self.mask_dir, mask.astype(np.uint8) * 255),
                (self.segmented_dir, apply_mask(rgb, mask)),
            ):
                target = folder / f"{image_id}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(target, compress_level=1)
        except Exception as exc:  # one bad image must not stop the dataset; it is listed instead
            return {
                "id": image_id,
                "label": label,
                "foreground_fraction": np.nan,
                "flagged": True,
                "error": f"{type(exc).__name__}: {exc}",
            }
        fraction = float(mask.mean())
        return {
            "id": image_id,
            "label": label,
            "foreground_fraction": fraction,
            "flagged": fraction < self.min_foreground,
            "error": "",
        }
