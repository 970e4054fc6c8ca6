"""Repeated evaluation of a deep model: retrain it on a re-split of its task.

The counterpart of :func:`leukbench.repeats.resplit_classic` for the CNN, transfer and hybrid
models. Every re-split trains from the same initial weights (same model seed and settings), so
the spread across split seeds is the spread that the split alone causes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from leukbench.deep.train import train_deep
from leukbench.splits import resplit


def resplit_deep(
    images_df: pd.DataFrame,
    splits: pd.DataFrame,
    classes: Sequence[str],
    spec: Mapping[str, Any],
    ratios: dict[str, float],
    split_seed: int,
    model_seed: int,
    *,
    cache_path: str | Path | None = None,
    threads: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(predictions, info) of the deep model retrained on the re-split with `split_seed`.

    `images_df`: id, path of one dataset variant. A cached transfer model needs a
    `cache_path` whose cache holds every image's training views (``every_view``), because a
    re-split moves val and test images into train.
    """
    _, predictions, info, _ = train_deep(
        images_df,
        resplit(splits, ratios, split_seed),
        classes,
        spec,
        model_seed,
        cache_path=cache_path,
        threads=threads,
    )
    return predictions, {**info, "split_seed": split_seed}
