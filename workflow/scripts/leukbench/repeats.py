"""Repeated evaluation: re-split a task's images with other seeds and refit a model on each.

Training on a re-split (classic here, deep in :mod:`leukbench.deep.repeats`) writes one
predictions table per split seed; :func:`repeat_metrics` scores them all with the shared
evaluator, so a cost-matrix edit re-scores the repeats without refitting anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from leukbench.classic import train_classic
from leukbench.metrics import HEADLINE, evaluate
from leukbench.splits import resplit

log = logging.getLogger(__name__)


def resplit_classic(
    features: pd.DataFrame,
    splits: pd.DataFrame,
    classes: list[str],
    spec: dict[str, Any],
    ratios: dict[str, float],
    split_seed: int,
    model_seed: int,
    n_jobs: int = 1,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(predictions, info) of the classic model refitted on the re-split with `split_seed`."""
    start = time.perf_counter()
    _, predictions, info = train_classic(
        features, resplit(splits, ratios, split_seed), classes, spec, model_seed, n_jobs=n_jobs
    )
    info["train_seconds"] = time.perf_counter() - start
    info["split_seed"] = split_seed
    return predictions, info


def repeat_metrics(
    predictions: Mapping[int, pd.DataFrame], classes: list[str], cost: list[list[float]]
) -> pd.DataFrame:
    """Test metrics (split_seed, metric, value) of each split seed's predictions."""
    rows = []
    for split_seed, table in predictions.items():
        test = evaluate(table, classes, cost)["test"]
        rows += [{"split_seed": split_seed, "metric": m, "value": test[m]} for m in HEADLINE]
        log.info("split seed %d: test accuracy %.4f", split_seed, test["accuracy"])
    return pd.DataFrame(rows, columns=["split_seed", "metric", "value"])
