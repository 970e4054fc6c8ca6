"""HSV threshold segmentation on synthetic smears whose true masks are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import BACKGROUND, PURPLE, disc_mask, save_image, smear_rgb
from PIL import Image
from skimage.color import rgb2hsv

from leukbench.segmentation import (
    STATS_COLUMNS,
    Cleanup,
    HsvThresholds,
    SegmentJob,
    apply_mask,
    hsv_mask,
)

PUBLISHED = HsvThresholds(hue_min=0.7, hue_max=0.8, saturation_min=0.5, value_min=0.4)
NO_CLEANUP = Cleanup(opening_radius=0, min_object_px=0, max_hole_px=0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_synthetic_colours_are_where_the_test_needs_them() -> None:
    hue, sat, val = rgb2hsv(np.array([[PURPLE]], dtype=np.uint8))[0, 0]
    assert 0.7 <= hue <= 0.8 and sat >= 0.5 and val >= 0.4
    assert rgb2hsv(np.array([[BACKGROUND]], dtype=np.uint8))[0, 0, 1] < 0.5


def test_purple_disc_on_pale_background() -> None:
    size, centre, radius = 64, (30.0, 34.0), 15.0
    rgb = smear_rgb(size, centre, radius)
    truth = disc_mask(size, centre, radius)
    mask = hsv_mask(rgb, PUBLISHED, Cleanup())
    assert mask.dtype == bool and mask.shape == (size, size)
    assert iou(mask, truth) > 0.95


def test_noisy_disc_is_still_found() -> None:
    size, centre, radius = 64, (32.0, 32.0), 16.0
    rng = np.random.default_rng(0)
    rgb = smear_rgb(size, centre, radius).astype(int) + rng.integers(-8, 9, size=(size, size, 3))
    mask = hsv_mask(np.clip(rgb, 0, 255).astype(np.uint8), PUBLISHED, Cleanup())
    assert iou(mask, disc_mask(size, centre, radius)) > 0.95


def test_background_only_gives_an_empty_mask() -> None:
    rgb = np.full((32, 32, 3), BACKGROUND, dtype=np.uint8)
    assert not hsv_mask(rgb, PUBLISHED, Cleanup()).any()


def test_colours_outside_the_range_are_background() -> None:
    rgb = np.full((32, 32, 3), BACKGROUND, dtype=np.uint8)
    rgb[:, :16] = (60, 30, 90)  # purple hue but V=0.35 < 0.4
    rgb[:, 16:] = (170, 150, 190)  # purple hue but S=0.21 < 0.5
    assert not hsv_mask(rgb, PUBLISHED, NO_CLEANUP).any()


def test_specks_smaller_than_min_object_px_are_removed() -> None:
    size, centre, radius = 64, (40.0, 40.0), 12.0
    rgb = smear_rgb(size, centre, radius)
    rgb[4:8, 4:8] = PURPLE  # a 4x4 speck: 12 px after opening with disk(1), < 30
    rgb[4:9, 50:55] = PURPLE  # a 5x5 speck: 21 px after opening, < 30
    cleanup = Cleanup(opening_radius=1, min_object_px=30, max_hole_px=64)
    mask = hsv_mask(rgb, PUBLISHED, cleanup)
    assert not mask[:12, :].any()
    assert iou(mask, disc_mask(size, centre, radius)) > 0.95

    # the specks survive the opening alone: it is min_object_px that removes them
    kept = hsv_mask(rgb, PUBLISHED, Cleanup(opening_radius=1, min_object_px=0, max_hole_px=64))
    assert kept[4:8, 4:8].any() and kept[4:9, 50:55].any()


@pytest.mark.parametrize("min_object_px", [10, 30])
def test_min_object_px_is_the_smallest_object_kept(min_object_px: int) -> None:
    """Objects of exactly min_object_px pixels are kept; one pixel fewer is removed."""
    rgb = np.full((40, 40, 3), BACKGROUND, dtype=np.uint8)
    rgb[2:3, 2 : 2 + min_object_px] = PURPLE  # a line of exactly min_object_px pixels
    rgb[20:21, 2 : 2 + min_object_px - 1] = PURPLE  # one pixel short
    cleanup = Cleanup(opening_radius=0, min_object_px=min_object_px, max_hole_px=0)
    mask = hsv_mask(rgb, PUBLISHED, cleanup)
    assert mask[2].sum() == min_object_px
    assert not mask[20].any()


def test_small_holes_are_filled_and_large_ones_kept() -> None:
    size, centre, radius = 64, (32.0, 32.0), 22.0
    rgb = smear_rgb(size, centre, radius)
    rgb[20:24, 20:24] = BACKGROUND  # 16 px hole: filled (<= 64)
    rgb[32:44, 32:44] = BACKGROUND  # 144 px hole: kept
    mask = hsv_mask(rgb, PUBLISHED, Cleanup(opening_radius=1, min_object_px=30, max_hole_px=64))
    assert mask[20:24, 20:24].all()
    assert not mask[34:42, 34:42].any()

    unfilled = hsv_mask(rgb, PUBLISHED, Cleanup(opening_radius=1, min_object_px=30, max_hole_px=0))
    assert not unfilled[20:24, 20:24].any()


def test_opening_removes_one_pixel_lines() -> None:
    rgb = smear_rgb(64, (32.0, 32.0), 12.0)
    rgb[2, :] = PURPLE  # a one-pixel-wide line, 64 px long: too big for min_object_px
    opened = hsv_mask(rgb, PUBLISHED, Cleanup(opening_radius=1, min_object_px=0, max_hole_px=0))
    assert not opened[2].any()
    raw = hsv_mask(rgb, PUBLISHED, NO_CLEANUP)
    assert raw[2].all()


def test_wrapping_hue_range() -> None:
    """min > max selects hues through red: 0.9..1.0 and 0.0..0.1."""
    rgb = np.full((32, 48, 3), BACKGROUND, dtype=np.uint8)
    rgb[:, :16] = (200, 30, 40)  # red, hue ~0.99
    rgb[:, 16:32] = (200, 60, 30)  # orange-red, hue ~0.03
    rgb[:, 32:] = (30, 200, 60)  # green, hue ~0.37
    hues = rgb2hsv(rgb)[0, [0, 20, 40], 0]
    assert hues[0] > 0.9 and hues[1] < 0.1 and 0.1 < hues[2] < 0.9
    wrap = HsvThresholds(hue_min=0.9, hue_max=0.1, saturation_min=0.5, value_min=0.4)
    mask = hsv_mask(rgb, wrap, NO_CLEANUP)
    assert mask[:, :32].all()
    assert not mask[:, 32:].any()
    # the same colours with the ordinary, non-wrapping reading of the range select nothing red
    plain = HsvThresholds(hue_min=0.1, hue_max=0.9, saturation_min=0.5, value_min=0.4)
    np.testing.assert_array_equal(hsv_mask(rgb, plain, NO_CLEANUP)[:, :32], False)


def test_apply_mask_zeroes_the_background() -> None:
    rgb = smear_rgb(32)
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:20, 4:30] = True
    out = apply_mask(rgb, mask)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out[mask], rgb[mask])
    assert (out[~mask] == 0).all()


# --- SegmentJob ----------------------------------------------------------------------------------


def make_job(tmp_path: Path, size: tuple[int, int] | None = None) -> SegmentJob:
    return SegmentJob(
        thresholds=PUBLISHED,
        cleanup=Cleanup(),
        min_foreground=0.005,
        mask_dir=tmp_path / "masks",
        segmented_dir=tmp_path / "segmented",
        size=size,
    )


def test_segment_job_writes_mask_and_segmented_png(tmp_path: Path) -> None:
    rgb = smear_rgb(64, (32.0, 32.0), 14.0)
    path = save_image(rgb, tmp_path / "in" / "cell.png")
    row = make_job(tmp_path)(("Early/cell", "Early", str(path)))
    assert set(row) == set(STATS_COLUMNS)
    assert row["error"] == "" and row["flagged"] is False
    truth = disc_mask(64, (32.0, 32.0), 14.0)
    assert row["foreground_fraction"] == pytest.approx(truth.mean(), abs=0.01)

    mask = np.asarray(Image.open(tmp_path / "masks" / "Early" / "cell.png"))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert iou(mask == 255, truth) > 0.95
    segmented = np.asarray(Image.open(tmp_path / "segmented" / "Early" / "cell.png"))
    assert segmented.shape == (64, 64, 3)
    assert (segmented[mask == 0] == 0).all()
    np.testing.assert_array_equal(segmented[mask == 255], rgb[mask == 255])


def test_segment_job_resizes_to_the_configured_size(tmp_path: Path) -> None:
    path = save_image(smear_rgb(48), tmp_path / "in.png")
    make_job(tmp_path, size=(32, 24))(("x", "Pre", str(path)))
    assert Image.open(tmp_path / "masks" / "x.png").size == (32, 24)


def test_segment_job_flags_a_near_empty_image(tmp_path: Path) -> None:
    rgb = np.full((64, 64, 3), BACKGROUND, dtype=np.uint8)
    rgb[10:15, 10:15] = PURPLE  # 25 px of 4096: below 0.005 once cleaned (and before: 0.006)
    path = save_image(rgb, tmp_path / "faint.png")
    row = make_job(tmp_path)(("faint", "Benign", str(path)))
    assert row["flagged"] is True
    assert row["foreground_fraction"] < 0.005
    assert row["error"] == ""
    assert (tmp_path / "masks" / "faint.png").exists()


def test_segment_job_reports_a_corrupt_file_as_an_error_row(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    row = make_job(tmp_path)(("broken", "Pro", str(path)))
    assert row["id"] == "broken" and row["label"] == "Pro"
    assert row["flagged"] is True
    assert np.isnan(row["foreground_fraction"])
    assert row["error"].startswith("ImageError: ")
    assert str(path) in row["error"]
    assert not (tmp_path / "masks" / "broken.png").exists()
