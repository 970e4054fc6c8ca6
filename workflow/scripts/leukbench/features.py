"""Handcrafted features for the classic models: colour, intensity, gradient, texture and shape.

A superset of what study 003's notebooks used (RGB histograms, grey-level moments, gradient
magnitude statistics, connected-component shape of the thresholded cell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.color import rgb2gray
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.filters import sobel
from skimage.measure import label, regionprops

from leukbench.images import load_rgb, to_hsv

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
SHAPE_KEYS = (
    "area",
    "perimeter",
    "eccentricity",
    "solidity",
    "extent",
    "major_axis",
    "minor_axis",
    "circularity",
    "equivalent_diameter",
)


@dataclass(frozen=True)
class FeatureSettings:
    size: int = 150
    hist_bins: int = 16
    glcm_levels: int = 32
    glcm_distances: tuple[int, ...] = (1, 2)
    lbp_points: int = 8
    lbp_radius: int = 1


def _hist(values: np.ndarray, bins: int, name: str) -> dict[str, float]:
    # Equal-width bins on [0, 1] via bincount: np.histogram is several times slower here.
    index = np.minimum((values.ravel() * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins) / max(values.size, 1)
    return {f"{name}_hist{i:02d}": float(c) for i, c in enumerate(counts)}


def colour_features(rgb01: np.ndarray, hsv: np.ndarray, bins: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for channels, names in ((rgb01, "rgb"), (hsv, "hsv")):
        for k, name in enumerate(names):
            channel = channels[..., k]
            out |= _hist(channel, bins, name)
            out[f"{name}_mean"] = float(channel.mean())
            out[f"{name}_sd"] = float(channel.std())
    return out


def intensity_features(gray: np.ndarray) -> dict[str, float]:
    flat = gray.ravel()
    mean, var = float(flat.mean()), float(flat.var())
    centred = flat - mean
    squared = centred * centred  # products, not **: float pow is ~20x slower here
    # Population skewness and excess kurtosis (scipy.stats' defaults) from raw moments:
    # scipy's nan-policy wrapper costs more than the arithmetic at this image size.
    skewness = float((squared * centred).mean() / var**1.5) if var > 0 else 0.0
    excess_kurtosis = float((squared * squared).mean() / var**2 - 3.0) if var > 0 else 0.0
    return {
        "gray_mean": mean,
        "gray_sd": var**0.5,
        "gray_var": var,
        "gray_min": float(flat.min()),
        "gray_max": float(flat.max()),
        "gray_skew": skewness,
        "gray_kurtosis": excess_kurtosis,
    }


def gradient_features(gray: np.ndarray, edge_threshold: float = 0.05) -> dict[str, float]:
    magnitude = sobel(gray)
    # Edge density from the same Sobel magnitude: Canny's smoothing and hysteresis would cost
    # more than every other feature together and adds little for these 150 px cell crops.
    return {
        "grad_mean": float(magnitude.mean()),
        "grad_sd": float(magnitude.std()),
        "edge_density": float((magnitude > edge_threshold).mean()),
    }


def texture_features(gray: np.ndarray, settings: FeatureSettings) -> dict[str, float]:
    levels = settings.glcm_levels
    # clip before the cast: with 256 levels, white (256.0) would wrap round to 0 in uint8
    quantised = np.minimum(gray * levels, levels - 1).astype(np.uint8)
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    glcm = graycomatrix(
        quantised, list(settings.glcm_distances), angles, levels=levels, symmetric=True, normed=True
    )
    out: dict[str, float] = {}
    for prop in GLCM_PROPS:
        values = graycoprops(glcm, prop).mean(axis=1)  # averaged over angles: rotation-robust
        for d, value in zip(settings.glcm_distances, values, strict=True):
            out[f"glcm_{prop.lower()}_d{d}"] = float(np.nan_to_num(value))
    points = settings.lbp_points
    lbp = local_binary_pattern(
        (gray * 255).astype(np.uint8), points, settings.lbp_radius, method="uniform"
    )
    counts = np.bincount(lbp.astype(np.int64).ravel(), minlength=points + 2) / lbp.size
    out |= {f"lbp_{i:02d}": float(c) for i, c in enumerate(counts)}
    return out


def shape_features(mask: np.ndarray, rgb01: np.ndarray) -> dict[str, float]:
    labelled = label(mask)
    regions = regionprops(labelled)
    out = {
        "mask_fraction": float(mask.mean()),
        "mask_objects": float(len(regions)),
        "mask_empty": float(not regions),
    }
    if not regions:
        out |= {f"cell_{k}": 0.0 for k in SHAPE_KEYS}
        out |= {f"cell_{c}_mean": 0.0 for c in "rgb"}
        return out
    cell = max(regions, key=lambda r: r.area)
    perimeter = float(cell.perimeter)
    out |= {
        "cell_area": float(cell.area) / mask.size,
        "cell_perimeter": perimeter / np.sqrt(mask.size),
        "cell_eccentricity": float(cell.eccentricity),
        "cell_solidity": float(cell.solidity),
        "cell_extent": float(cell.extent),
        "cell_major_axis": float(cell.axis_major_length) / mask.shape[0],
        "cell_minor_axis": float(cell.axis_minor_length) / mask.shape[0],
        "cell_circularity": float(4 * np.pi * cell.area / perimeter**2) if perimeter else 0.0,
        "cell_equivalent_diameter": float(cell.equivalent_diameter_area) / mask.shape[0],
    }
    inside = rgb01[labelled == cell.label]
    out |= {f"cell_{c}_mean": float(v) for c, v in zip("rgb", inside.mean(axis=0), strict=True)}
    return out


def image_features(
    rgb: np.ndarray, mask: np.ndarray, settings: FeatureSettings
) -> dict[str, float]:
    """All features of one uint8 RGB image and its boolean cell mask; both are resized to size."""
    size = (settings.size, settings.size)
    rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    mask = (
        np.asarray(
            Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        )
        > 127
    )
    rgb01 = rgb.astype(np.float64) / 255.0
    gray = rgb2gray(rgb01)
    return (
        colour_features(rgb01, to_hsv(rgb), settings.hist_bins)
        | intensity_features(gray)
        | gradient_features(gray)
        | texture_features(gray, settings)
        | shape_features(mask, rgb01)
    )


@dataclass(frozen=True)
class FeatureJob:
    settings: FeatureSettings

    def __call__(self, item: tuple[str, str, str]) -> dict:
        image_id, image_path, mask_path = item
        try:
            rgb = load_rgb(image_path)
            mask = np.asarray(Image.open(mask_path).convert("L")) > 127
            return {"id": image_id, "error": ""} | image_features(rgb, mask, self.settings)
        except Exception as exc:  # listed in the failures table, never fatal for the dataset
            return {"id": image_id, "error": f"{type(exc).__name__}: {exc}"}
