"""Handcrafted features: stable keys, finite values, and known values on constructed images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import disc_mask, save_image, smear_rgb, smooth_rgb

from leukbench.features import FeatureJob, FeatureSettings, image_features

SETTINGS = FeatureSettings()  # 150 x 150, 16 bins, 32 grey levels, distances 1 and 2
SIZE = SETTINGS.size


def features_of(
    rgb: np.ndarray, mask: np.ndarray | None = None, settings: FeatureSettings = SETTINGS
) -> dict[str, float]:
    if mask is None:
        mask = np.zeros(rgb.shape[:2], dtype=bool)
    return image_features(rgb, mask, settings)


def test_same_finite_keys_for_different_images() -> None:
    first = features_of(smooth_rgb(seed=1, size=64), disc_mask(64, (30, 30), 12))
    second = features_of(smear_rgb(100), np.zeros((100, 100), dtype=bool))
    third = features_of(np.zeros((40, 70, 3), dtype=np.uint8))  # non-square, all black
    assert list(first) == list(second) == list(third)
    for values in (first, second, third):
        assert all(isinstance(v, float) for v in values.values())
        assert all(math.isfinite(v) for v in values.values())


def test_expected_feature_families_are_present() -> None:
    keys = set(features_of(smooth_rgb(seed=2)))
    bins = SETTINGS.hist_bins
    for channel in ("r", "g", "b", "h", "s", "v"):
        assert {f"{channel}_hist{i:02d}" for i in range(bins)} <= keys
        assert {f"{channel}_mean", f"{channel}_sd"} <= keys
    assert {
        "gray_mean",
        "gray_sd",
        "gray_var",
        "gray_min",
        "gray_max",
        "gray_skew",
        "gray_kurtosis",
        "grad_mean",
        "grad_sd",
        "edge_density",
    } <= keys
    assert {f"glcm_contrast_d{d}" for d in SETTINGS.glcm_distances} <= keys
    assert {f"lbp_{i:02d}" for i in range(SETTINGS.lbp_points + 2)} <= keys
    assert {"cell_area", "cell_circularity", "cell_eccentricity", "mask_empty"} <= keys


def test_constant_grey_image() -> None:
    grey = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    f = features_of(grey)
    assert f["gray_mean"] == pytest.approx(128 / 255)
    assert f["gray_min"] == pytest.approx(f["gray_max"])
    for key in (
        "gray_sd",
        "gray_var",
        "gray_skew",
        "gray_kurtosis",
        "grad_mean",
        "grad_sd",
        "edge_density",
        "glcm_contrast_d1",
        "glcm_dissimilarity_d2",
        "s_mean",
        "r_sd",
    ):
        assert f[key] == 0.0, key
    assert f["glcm_homogeneity_d1"] == pytest.approx(1.0)
    assert f["glcm_energy_d2"] == pytest.approx(1.0)
    # every pixel falls in the bin holding 128/255 = 0.502
    assert f["r_hist08"] == 1.0
    assert f["v_hist08"] == 1.0


def test_histograms_sum_to_one() -> None:
    f = features_of(smooth_rgb(seed=3, size=80))
    for channel in ("r", "g", "b", "h", "s", "v"):
        total = sum(f[f"{channel}_hist{i:02d}"] for i in range(SETTINGS.hist_bins))
        assert total == pytest.approx(1.0), channel
    assert sum(f[f"lbp_{i:02d}"] for i in range(SETTINGS.lbp_points + 2)) == pytest.approx(1.0)


def test_histograms_count_pure_white_in_the_last_bin() -> None:
    f = features_of(np.full((SIZE, SIZE, 3), 255, dtype=np.uint8))
    assert f["r_hist15"] == 1.0
    assert sum(f[f"r_hist{i:02d}"] for i in range(16)) == pytest.approx(1.0)


def test_black_and_white_halves() -> None:
    rgb = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    rgb[:, SIZE // 2 :] = 255
    f = features_of(rgb)
    assert f["gray_mean"] == pytest.approx(0.5)
    assert f["gray_sd"] == pytest.approx(0.5)
    assert (f["gray_min"], f["gray_max"]) == (0.0, pytest.approx(1.0))
    assert f["r_hist00"] == pytest.approx(0.5) and f["r_hist15"] == pytest.approx(0.5)
    assert f["grad_mean"] > 0 and f["edge_density"] > 0
    assert f["glcm_contrast_d1"] > 0


@pytest.mark.parametrize("levels", [2, 32, 255, 256])
def test_glcm_sees_black_and_white_as_different_levels_for_any_level_count(levels: int) -> None:
    rgb = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    rgb[:, SIZE // 2 :] = 255
    f = features_of(rgb, settings=FeatureSettings(glcm_levels=levels))
    assert f["glcm_contrast_d1"] > 0
    assert f["glcm_homogeneity_d1"] < 1


def test_filled_disc_shape_features_match_the_analytic_values() -> None:
    radius = 40.0
    centre = ((SIZE - 1) / 2, (SIZE - 1) / 2)
    mask = disc_mask(SIZE, centre, radius)
    f = features_of(smear_rgb(SIZE, centre, radius), mask)
    assert f["mask_empty"] == 0.0 and f["mask_objects"] == 1.0
    assert f["cell_area"] == pytest.approx(math.pi * radius**2 / SIZE**2, rel=0.01)
    assert f["mask_fraction"] == pytest.approx(f["cell_area"])
    assert f["cell_circularity"] == pytest.approx(1.0, abs=0.1)
    assert f["cell_eccentricity"] == pytest.approx(0.0, abs=0.05)
    assert f["cell_major_axis"] == pytest.approx(2 * radius / SIZE, rel=0.02)
    assert f["cell_minor_axis"] == pytest.approx(2 * radius / SIZE, rel=0.02)
    assert f["cell_equivalent_diameter"] == pytest.approx(2 * radius / SIZE, rel=0.01)
    assert f["cell_perimeter"] == pytest.approx(2 * math.pi * radius / SIZE, rel=0.06)
    assert f["cell_extent"] == pytest.approx(math.pi / 4, rel=0.02)
    assert f["cell_solidity"] > 0.97
    # the mean colour inside the cell is the disc's purple
    assert f["cell_r_mean"] == pytest.approx(120 / 255, abs=1e-6)
    assert f["cell_b_mean"] == pytest.approx(180 / 255, abs=1e-6)


def test_an_ellipse_is_eccentric_and_less_circular_than_a_disc() -> None:
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    ellipse = ((rows - 75) / 20) ** 2 + ((cols - 75) / 60) ** 2 <= 1
    f = features_of(smear_rgb(SIZE), ellipse)
    expected = math.sqrt(1 - (20 / 60) ** 2)
    assert f["cell_eccentricity"] == pytest.approx(expected, abs=0.02)
    assert f["cell_major_axis"] == pytest.approx(120 / SIZE, rel=0.02)
    assert f["cell_minor_axis"] == pytest.approx(40 / SIZE, rel=0.03)
    assert f["cell_circularity"] < 0.85


def test_largest_object_is_the_cell() -> None:
    mask = disc_mask(SIZE, (40, 40), 25) | disc_mask(SIZE, (120, 120), 10)
    f = features_of(smear_rgb(SIZE), mask)
    assert f["mask_objects"] == 2.0
    assert f["cell_area"] == pytest.approx(math.pi * 25**2 / SIZE**2, rel=0.02)
    assert f["mask_fraction"] > f["cell_area"]


def test_empty_mask_gives_mask_empty_and_zero_shape() -> None:
    f = features_of(smear_rgb(SIZE), np.zeros((SIZE, SIZE), dtype=bool))
    assert f["mask_empty"] == 1.0
    assert f["mask_objects"] == 0.0 and f["mask_fraction"] == 0.0
    shape = [k for k in f if k.startswith("cell_")]
    assert len(shape) == 12
    assert all(f[k] == 0.0 for k in shape)


def test_image_and_mask_are_resized_to_the_feature_size() -> None:
    """A 300 px disc image gives the same relative shape features as a 150 px one."""
    big = features_of(smear_rgb(300, (149.5, 149.5), 80), disc_mask(300, (149.5, 149.5), 80))
    small = features_of(smear_rgb(150, (74.5, 74.5), 40), disc_mask(150, (74.5, 74.5), 40))
    assert big["cell_area"] == pytest.approx(small["cell_area"], rel=0.02)
    assert big["mask_objects"] == 1.0


# --- FeatureJob ----------------------------------------------------------------------------------


def test_feature_job_reads_image_and_mask(tmp_path: Path) -> None:
    centre, radius = (31.5, 31.5), 16.0
    image = save_image(smear_rgb(64, centre, radius), tmp_path / "img.png")
    mask = save_image((disc_mask(64, centre, radius) * 255).astype(np.uint8), tmp_path / "m.png")
    row = FeatureJob(SETTINGS)(("Pre/img", str(image), str(mask)))
    assert row["id"] == "Pre/img" and row["error"] == ""
    assert row["mask_empty"] == 0.0
    assert row["cell_area"] == pytest.approx(math.pi * radius**2 / 64**2, rel=0.03)
    expected_keys = {"id", "error"} | set(features_of(smear_rgb(64)))
    assert set(row) == expected_keys


def test_feature_job_resizes_a_mask_of_another_size(tmp_path: Path) -> None:
    image = save_image(smear_rgb(64, (31.5, 31.5), 16), tmp_path / "img.png")
    small_mask = (disc_mask(32, (15.5, 15.5), 8) * 255).astype(np.uint8)
    mask = save_image(small_mask, tmp_path / "m.png")
    row = FeatureJob(SETTINGS)(("x", str(image), str(mask)))
    assert row["error"] == ""
    assert row["cell_area"] == pytest.approx(math.pi * 8**2 / 32**2, rel=0.05)


def test_feature_job_returns_an_error_row_for_an_unreadable_image(tmp_path: Path) -> None:
    image = tmp_path / "bad.png"
    image.write_bytes(b"not a png at all")
    mask = save_image(np.zeros((8, 8), dtype=np.uint8), tmp_path / "m.png")
    row = FeatureJob(SETTINGS)(("Benign/bad", str(image), str(mask)))
    assert set(row) == {"id", "error"}
    assert row["id"] == "Benign/bad"
    assert row["error"].startswith("ImageError: ") and str(image) in row["error"]


def test_feature_job_returns_an_error_row_for_a_missing_mask(tmp_path: Path) -> None:
    image = save_image(smear_rgb(32), tmp_path / "img.png")
    row = FeatureJob(SETTINGS)(("x", str(image), str(tmp_path / "missing.png")))
    assert row["error"].startswith("FileNotFoundError")
