"""Leakage checks: duplicates across splits, and a proxy-group split for slide-level optimism.

The public datasets carry no patient or slide ids, and each patient contributes many images
whose stain and illumination match. An image-level split therefore puts a patient's images on
both sides, and colour features can recognise the slide instead of the subtype. Clustering the
images by colour appearance gives proxy groups that stand in for slides; splitting by proxy
group and comparing with the image-level split estimates how optimistic the latter is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from leukbench import features as handcrafted
from leukbench.splits import SPLITS, make_splits

PROXY_PROTOCOL = "proxy_group"


# --- duplicates across splits ------------------------------------------------------------------


class CrossSplit(NamedTuple):
    pairs: pd.DataFrame  # the offending pairs, with split_a and split_b added
    counts: pd.DataFrame  # split_a, split_b (in train, val, test order), n_exact, n_near, n_pairs


def cross_split_duplicates(pairs: pd.DataFrame, splits: pd.DataFrame) -> CrossSplit:
    """Duplicate pairs whose two images were put in different splits.

    `pairs` is duplicates/pairs.tsv (id_a, id_b, label_a, label_b, kind, distance,
    cross_class); `splits` is splits.tsv (id, split, ...). Pairs with an image outside the
    splits (excluded, e.g. collapsed as a duplicate) cannot leak and are left out.
    """
    split_of = splits.set_index("id")["split"]
    found = pairs.assign(split_a=pairs["id_a"].map(split_of), split_b=pairs["id_b"].map(split_of))
    both = found["split_a"].notna() & found["split_b"].notna()
    offending = found[both & (found["split_a"] != found["split_b"])].reset_index(drop=True)
    order = {name: k for k, name in enumerate(SPLITS)}

    def ordered(a: str, b: str) -> tuple[str, str]:
        return (a, b) if order.get(a, len(order)) <= order.get(b, len(order)) else (b, a)

    keys = [ordered(a, b) for a, b in zip(offending["split_a"], offending["split_b"], strict=True)]
    counted = pd.DataFrame(keys, columns=["split_a", "split_b"]).assign(
        n_exact=(offending["kind"] == "exact").to_numpy(dtype=int),
        n_near=(offending["kind"] == "near").to_numpy(dtype=int),
        n_pairs=1,
    )
    counts = counted.groupby(["split_a", "split_b"], as_index=False).sum()
    return CrossSplit(offending, counts)


# --- proxy groups ------------------------------------------------------------------------------


def colour_columns(features: pd.DataFrame, histograms: bool = False) -> list[str]:
    """The colour-statistic columns of a features.py table: per-channel mean and sd of R, G, B,
    H, S, V, plus the channel histograms when `histograms`.

    The names come from features.colour_features itself, so they follow that module.
    """
    dummy = np.zeros((1, 1, 3))
    names = list(handcrafted.colour_features(dummy, dummy, bins=1))
    statistics = [n for n in names if "_hist" not in n]
    chosen = [c for c in features.columns if c in statistics]
    if histograms:
        prefixes = tuple(n.split("_hist")[0] + "_hist" for n in names if "_hist" in n)
        chosen += [c for c in features.columns if c.startswith(prefixes)]
    missing = sorted(set(statistics) - set(chosen))
    if missing:
        raise ValueError(f"the features table lacks the colour columns {missing}")
    return chosen


def colour_statistics(features: pd.DataFrame, histograms: bool = False) -> pd.DataFrame:
    """id plus the colour columns, for the images whose features were computed."""
    columns = colour_columns(features, histograms)
    usable = features
    if "error" in features.columns:
        usable = features[features["error"].fillna("") == ""]
    return usable[["id", *columns]].dropna().reset_index(drop=True)


def proxy_groups(colour_features: pd.DataFrame, n_groups: int, seed: int) -> pd.Series:
    """Proxy slide groups: KMeans on standardised colour statistics; Series id -> group name.

    `colour_features` is colour_statistics' output (id plus numeric columns). Whole-image
    channel means and spreads track stain intensity, hue and illumination, which vary more
    between slides than within one, and standardising stops the wide-range channels from
    dominating the distances. KMeans (k-means++, 10 starts, seeded) partitions every image.
    Choose `n_groups` near the expected number of slides or patients.
    """
    if not 1 <= n_groups <= len(colour_features):
        raise ValueError(f"n_groups must lie in [1, {len(colour_features)}], got {n_groups}")
    values = colour_features.drop(columns="id").to_numpy(dtype=float)
    scaled = StandardScaler().fit_transform(values)
    labels = KMeans(n_clusters=n_groups, n_init=10, random_state=seed).fit_predict(scaled)
    width = len(str(n_groups - 1))
    return pd.Series(
        [f"proxy{k:0{width}d}" for k in labels],
        index=colour_features["id"].to_numpy(),
        name="proxy_group",
    )


def proxy_group_split(
    table: pd.DataFrame, groups: pd.Series, ratios: dict[str, float], seed: int
) -> pd.DataFrame:
    """splits.make_splits with the proxy groups as groups: no proxy group spans two splits.

    `table` has id and label (other columns are kept, a `group` column is replaced); `groups`
    maps id to proxy group (proxy_groups' output) and must cover every id. Returns the table
    with group, split and protocol = "proxy_group". (If every group is a single image,
    make_splits falls back to its stratified image-level split, which is then the same thing.)
    """
    group = table["id"].map(groups)
    if group.isna().any():
        missing = table.loc[group.isna(), "id"].tolist()
        raise ValueError(f"{len(missing)} images have no proxy group, e.g. {missing[:5]}")
    split = make_splits(table.assign(group=group.astype(str)), ratios, seed)
    return split.assign(protocol=PROXY_PROTOCOL)


# --- optimism ----------------------------------------------------------------------------------


def optimism_table(
    image_level_metrics: pd.DataFrame,
    proxy_metrics: pd.DataFrame,
    metric: str = "accuracy",
    split: str = "test",
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per model: image-level against proxy-group `metric` on `split`, and the gap between them.

    Both tables are tidy metrics (metrics.tidy's format: key columns such as dataset, variant,
    model, then split, metric, value). `keys` defaults to the key columns both tables share.
    Returns keys, image_level, proxy_group and gap = image_level - proxy_group (the optimism).
    """
    tidy_columns = {"split", "metric", "value"}
    if keys is None:
        keys = [
            c
            for c in image_level_metrics.columns
            if c not in tidy_columns and c in proxy_metrics.columns
        ]

    def pick(table: pd.DataFrame, name: str) -> pd.DataFrame:
        rows = table[(table["metric"] == metric) & (table["split"] == split)]
        return rows[[*keys, "value"]].rename(columns={"value": name})

    merged = pick(image_level_metrics, "image_level").merge(
        pick(proxy_metrics, "proxy_group"), on=list(keys), how="outer"
    )
    merged["gap"] = merged["image_level"] - merged["proxy_group"]
    return merged.reset_index(drop=True)
