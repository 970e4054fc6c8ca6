"""Repeated evaluation: re-split a task's images with other seeds and refit a classic model."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from leukbench.classic import train_classic
from leukbench.metrics import HEADLINE, evaluate
from leukbench.splits import make_splits

log = logging.getLogger(__name__)


def resplit(splits: pd.DataFrame, ratios: dict[str, float], seed: int) -> pd.DataFrame:
    """The same images, labels and protocol as `splits`, split again with `seed`.

    Group-disjoint (patient or proxy-group) splits stay group-disjoint.
    """
    protocol = str(splits["protocol"].iloc[0])
    grouped = protocol in ("group", "proxy")
    table = splits.drop(columns=["split", "protocol"])
    again = make_splits(table, ratios, seed, "group" if grouped else "image")
    return again.assign(protocol=protocol)


def repeated_metrics(
    features: pd.DataFrame,
    splits: pd.DataFrame,
    classes: list[str],
    spec: dict[str, Any],
    cost: list[list[float]],
    ratios: dict[str, float],
    split_seeds: list[int],
    model_seed: int,
) -> pd.DataFrame:
    """Test metrics (split_seed, metric, value) of the model refitted on each re-split."""
    rows = []
    for split_seed in split_seeds:
        table = resplit(splits, ratios, split_seed)
        _, predictions, _ = train_classic(features, table, classes, spec, model_seed)
        test = evaluate(predictions, classes, cost)["test"]
        rows += [{"split_seed": split_seed, "metric": m, "value": test[m]} for m in HEADLINE]
        log.info("split seed %d: test accuracy %.4f", split_seed, test["accuracy"])
    return pd.DataFrame(rows)
