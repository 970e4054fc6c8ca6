"""Segmentation quality-control figure: original | mask | segmented, a few images per class."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from leukbench.images import load_rgb


def pick_examples(stats: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Seeded sample per class; flagged (near-empty) masks are shown first, they need looking at."""
    usable = stats[stats["error"] == ""]
    rng = np.random.default_rng(seed)
    chosen = []
    for _, members in usable.groupby("label", sort=True):
        members = members.iloc[rng.permutation(len(members))]
        members = pd.concat([members[members["flagged"]].head(1), members[~members["flagged"]]])
        chosen.append(members.head(per_class))
    return pd.concat(chosen) if chosen else usable.head(0)


def segmentation_grid(
    images: pd.DataFrame,
    stats: pd.DataFrame,
    mask_dir: str | Path,
    segmented_dir: str | Path,
    per_class: int,
    seed: int,
) -> Figure:
    examples = pick_examples(stats, per_class, seed)
    paths = images.set_index("id")["path"]
    rows = max(len(examples), 1)
    figure, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    for axis, title in zip(axes[0], ("original", "mask", "segmented"), strict=True):
        axis.set_title(title, fontsize=9)
    for row, example in zip(axes, examples.itertuples(), strict=False):
        panels = (
            load_rgb(paths[example.id]),
            np.asarray(Image.open(Path(mask_dir) / f"{example.id}.png")),
            np.asarray(Image.open(Path(segmented_dir) / f"{example.id}.png")),
        )
        for axis, panel in zip(row, panels, strict=True):
            axis.imshow(panel, cmap="gray" if panel.ndim == 2 else None)
        flag = " FLAGGED" if example.flagged else ""
        row[0].set_ylabel(
            f"{example.label}\nfg {example.foreground_fraction:.3f}{flag}", fontsize=8
        )
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure
