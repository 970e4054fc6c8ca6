"""Balanced, seeded subsampling and stratified (group-aware) train/val/test splits."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def subsample(
    table: pd.DataFrame,
    classes: list[str],
    seed: int,
    n_per_class: int | str | None = None,
    n_total: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the same number of images from every class; return (kept, not_sampled).

    `n_total` is shared equally between classes; `n_per_class="min"` takes the smallest class's
    count from every class. A class with too few images gives all it has.
    """
    table = table.sort_values("id").reset_index(drop=True)
    if n_per_class is None and n_total is None:
        return table, table.iloc[0:0]
    if n_per_class == "min":
        counts = table["label"].value_counts()
        n_per_class = int(min(counts.get(c, 0) for c in classes))
    target = n_per_class if n_per_class is not None else n_total // len(classes)
    rng = np.random.default_rng(seed)
    kept = []
    for cls in classes:
        members = table[table["label"] == cls]
        if len(members) < target:
            log.warning(
                "class %s has %d images, fewer than the %d asked for: taking all of them",
                cls,
                len(members),
                target,
            )
            kept.append(members)
        else:
            kept.append(members.iloc[np.sort(rng.choice(len(members), target, replace=False))])
    chosen = pd.concat(kept).sort_values("id")
    return chosen.reset_index(drop=True), table[~table["id"].isin(chosen["id"])]


def _image_level_split(table: pd.DataFrame, ratios: dict[str, float], seed: int) -> pd.Series:
    rest, test = train_test_split(
        table, test_size=ratios["test"], stratify=table["label"], random_state=seed
    )
    val_share = ratios["val"] / (ratios["train"] + ratios["val"])
    train, val = train_test_split(
        rest, test_size=val_share, stratify=rest["label"], random_state=seed
    )
    split = pd.Series("", index=table.index)
    for name, part in (("train", train), ("val", val), ("test", test)):
        split[part.index] = name
    return split


def _group_split(table: pd.DataFrame, ratios: dict[str, float], seed: int) -> pd.Series:
    """Assign whole groups, largest first, to the split whose class counts fall furthest short."""
    counts = pd.crosstab(table["group"], table["label"])
    rng = np.random.default_rng(seed)
    order = counts.index[rng.permutation(len(counts))]
    order = sorted(order, key=lambda g: -counts.loc[g].sum())  # stable: ties keep random order
    totals = counts.sum().to_numpy(dtype=float)
    targets = {s: ratios[s] * totals for s in SPLITS}
    current = {s: np.zeros_like(totals) for s in SPLITS}
    assignment: dict[str, str] = {}
    for group in order:
        vector = counts.loc[group].to_numpy(dtype=float)

        def shortfall_after(s: str, vector: np.ndarray = vector) -> float:
            return sum(
                float(
                    np.sum(
                        ((current[t] + vector * (t == s)) - targets[t]) ** 2
                        / np.maximum(targets[t], 1.0)
                    )
                )
                for t in SPLITS
            )

        best = min(SPLITS, key=shortfall_after)
        current[best] += vector
        assignment[group] = best
    _fill_empty_splits(assignment, counts.sum(axis=1))
    return table["group"].map(assignment)


def _fill_empty_splits(assignment: dict[str, str], sizes: pd.Series) -> None:
    """Give every split at least one group (few, uneven groups can leave one empty): move the
    smallest group of the split that has the most groups."""
    for empty in SPLITS:
        if empty in assignment.values():
            continue
        donor = max(SPLITS, key=lambda s: sum(v == s for v in assignment.values()))
        if sum(v == donor for v in assignment.values()) < 2:
            return
        smallest = min((g for g, s in assignment.items() if s == donor), key=lambda g: sizes[g])
        log.warning("split %s got no group: moving group %s there from %s", empty, smallest, donor)
        assignment[smallest] = empty


class SplitError(ValueError):
    """A split that the data cannot give (e.g. patient-disjoint without patient ids)."""


def make_splits(
    table: pd.DataFrame, ratios: dict[str, float], seed: int, protocol: str = "auto"
) -> pd.DataFrame:
    """Add `split` and `protocol` columns.

    protocol "auto" is group-disjoint whenever every row has a non-empty group id, "group"
    demands it, and "image" splits images even when group ids exist.
    """
    table = table.sort_values("id").reset_index(drop=True)
    total = sum(ratios.values())
    ratios = {k: v / total for k, v in ratios.items()}
    groups = table["group"].fillna("").astype(str)
    has_groups = bool((groups != "").all()) and groups.nunique() < len(table)
    if protocol == "group" and not has_groups:
        missing = int((groups == "").sum())
        raise SplitError(
            f"a patient-disjoint split needs a group id on every image, but {missing} of "
            f"{len(table)} have none; fix the dataset's group_regex or groups_csv, or set the "
            "task's protocol to 'image'"
        )
    grouped = has_groups and protocol != "image"
    if grouped and groups.nunique() < len(SPLITS):
        raise SplitError(
            f"a patient-disjoint split needs at least {len(SPLITS)} groups, found "
            f"{groups.nunique()}; add data or set the task's protocol to 'image'"
        )
    split = (
        _group_split(table, ratios, seed) if grouped else _image_level_split(table, ratios, seed)
    )
    return table.assign(split=split.to_numpy(), protocol="group" if grouped else "image")


def resplit(splits: pd.DataFrame, ratios: dict[str, float], seed: int) -> pd.DataFrame:
    """The same images, labels and protocol as `splits`, split again with `seed`.

    Group-disjoint (patient or proxy-group) splits stay group-disjoint.
    """
    protocol = str(splits["protocol"].iloc[0])
    grouped = protocol in ("group", "proxy")
    table = splits.drop(columns=["split", "protocol"])
    again = make_splits(table, ratios, seed, "group" if grouped else "image")
    return again.assign(protocol=protocol)
