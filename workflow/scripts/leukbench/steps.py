"""Table-level glue for the pipeline steps: which images go in, which outputs come out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from leukbench.features import FeatureJob, FeatureSettings, colour_features
from leukbench.images import load_rgb, to_hsv
from leukbench.ingest import shared_ids
from leukbench.leakage import colour_statistics, proxy_groups
from leukbench.parallel import parallel_map
from leukbench.segmentation import STATS_COLUMNS, Cleanup, HsvThresholds, SegmentJob
from leukbench.splits import make_splits, subsample

log = logging.getLogger(__name__)

EXCLUDED_COLUMNS = ["id", "label", "reason"]


def task_labels(table: pd.DataFrame, labels: dict[str, list[str]]) -> pd.DataFrame:
    """Relabel dataset labels to task labels; `source_label` keeps the dataset's own."""
    inverse = {source: task for task, sources in labels.items() for source in sources}
    return table.assign(source_label=table["label"], label=table["label"].map(inverse))


def build_splits(
    manifest: pd.DataFrame,
    clusters: pd.DataFrame,
    split: dict[str, Any],
    collapse: bool,
    proxy: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The one split of a task that every model uses, and every image left out with the reason.

    `split` holds the task's `labels` (task label -> dataset labels), `protocol`, `ratios`,
    `seed` and the subsampling (`n_per_class` or `n_total`). Protocol "proxy" splits by the
    groups that `proxy` assigns to the chosen images (id -> group).
    """
    labels = split["labels"]
    classes = list(labels)
    complete, missing = shared_ids(manifest)
    first = manifest["variant"].iloc[0]
    table = manifest[(manifest["variant"] == first) & manifest["id"].isin(complete)]
    table = task_labels(table[["id", "label", "group"]], labels)
    table = table.sort_values("id").reset_index(drop=True)
    dataset_labels = manifest.drop_duplicates("id").set_index("id")["label"]
    excluded = [missing.assign(label=missing["id"].map(dataset_labels))]
    unused = table[table["label"].isna()]
    excluded.append(
        pd.DataFrame(
            {
                "id": unused["id"],
                "label": unused["source_label"],
                "reason": "dataset label " + unused["source_label"] + " is not used by this task",
            }
        )
    )
    table = table[table["label"].notna()]
    if collapse:
        dropped = clusters[~clusters["keep"].astype(bool) & clusters["id"].isin(table["id"])]
        excluded.append(
            pd.DataFrame(
                {
                    "id": dropped["id"],
                    "label": dropped["label"],
                    "reason": "duplicate of "
                    + dropped["cluster"]
                    + " (collapsed before splitting)",
                }
            )
        )
        table = table[~table["id"].isin(dropped["id"])]
    table, not_sampled = subsample(
        table, classes, split["seed"], split.get("n_per_class"), split.get("n_total")
    )
    excluded.append(not_sampled[["id", "label"]].assign(reason="not drawn by subsampling"))
    protocol = split.get("protocol", "auto")
    if protocol == "proxy":
        if proxy is None:
            raise ValueError("a proxy-group split needs a function that assigns proxy groups")
        table = table.assign(group=table["id"].map(proxy(table)).fillna("").astype(str))
        splits = make_splits(table, split["ratios"], split["seed"], "group")
        splits = splits.assign(protocol="proxy")
    else:
        splits = make_splits(table, split["ratios"], split["seed"], protocol)
    excluded_table = pd.concat(excluded, ignore_index=True)[EXCLUDED_COLUMNS]
    log.info(
        "split sizes: %s (%s-level); %d images excluded",
        splits["split"].value_counts().to_dict(),
        splits["protocol"].iloc[0] if len(splits) else "?",
        len(excluded_table),
    )
    return splits, excluded_table.sort_values("id").reset_index(drop=True)


def run_segmentation(
    images: pd.DataFrame,
    params: dict[str, Any],
    image_size: list[int] | None,
    mask_dir: str | Path,
    segmented_dir: str | Path,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Segment every image of one variant; write masks and segmented images; return stats."""
    job = SegmentJob(
        thresholds=HsvThresholds(
            params["hue"][0], params["hue"][1], params["saturation_min"], params["value_min"]
        ),
        cleanup=Cleanup(
            params.get("opening_radius", 1),
            params.get("min_object_px", 30),
            params.get("max_hole_px", 64),
        ),
        min_foreground=params.get("min_foreground", 0.005),
        mask_dir=Path(mask_dir),
        segmented_dir=Path(segmented_dir),
        size=tuple(image_size) if image_size else None,
    )
    Path(mask_dir).mkdir(parents=True, exist_ok=True)
    Path(segmented_dir).mkdir(parents=True, exist_ok=True)
    items = images[["id", "label", "path"]].itertuples(index=False, name=None)
    stats = pd.DataFrame(list(parallel_map(job, items, n_jobs=n_jobs)), columns=STATS_COLUMNS)
    failed = stats[stats["error"] != ""]
    for row in failed.itertuples():
        log.error("segmentation failed for %s: %s", row.id, row.error)
    log.info(
        "%d images segmented, %d flagged as (near-)empty, %d failed",
        len(stats),
        int(stats["flagged"].sum()),
        len(failed),
    )
    return stats


def compute_features(
    images: pd.DataFrame,
    splits: pd.DataFrame,
    mask_dir: str | Path,
    params: dict[str, Any],
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Features of the images in the split; a failed image keeps its row with an error."""
    settings = FeatureSettings(
        **{
            **params,
            "glcm_distances": tuple(params.get("glcm_distances", FeatureSettings.glcm_distances)),
        }
    )
    chosen = images[images["id"].isin(splits["id"])].sort_values("id")
    items = [
        (row.id, row.path, str(Path(mask_dir) / f"{row.id}.png")) for row in chosen.itertuples()
    ]
    table = pd.DataFrame(list(parallel_map(FeatureJob(settings), items, n_jobs=n_jobs)))
    failed = table[table["error"] != ""]
    for row in failed.itertuples():
        log.error("features failed for %s: %s", row.id, row.error)
    log.info(
        "features for %d images (%d columns), %d failed",
        len(table),
        table.shape[1] - 2,
        len(failed),
    )
    return table


@dataclass(frozen=True)
class ColourJob:
    """Whole-image colour statistics (R, G, B, H, S, V mean and sd) of one image."""

    size: int = 64

    def __call__(self, item: tuple[str, str]) -> dict:
        image_id, path = item
        try:
            rgb = np.asarray(Image.fromarray(load_rgb(path)).resize((self.size, self.size)))
            stats = colour_features(rgb.astype(np.float64) / 255.0, to_hsv(rgb), bins=1)
            return {"id": image_id, "error": ""} | stats
        except Exception as exc:  # the image then gets no proxy group and is listed
            return {"id": image_id, "error": f"{type(exc).__name__}: {exc}"}


def proxy_group_assigner(
    images: pd.DataFrame, n_groups: int, seed: int, n_jobs: int = 1
) -> Callable[[pd.DataFrame], pd.Series]:
    """A function giving the chosen images (id) proxy groups: KMeans on colour statistics.

    `images` maps id to path. Fewer groups than asked are used on small sets (at least 5
    images per group on average), so that every split can still get whole groups.
    """

    def assign(table: pd.DataFrame) -> pd.Series:
        chosen = images[images["id"].isin(table["id"])]
        items = list(zip(chosen["id"], chosen["path"], strict=True))
        colours = colour_statistics(pd.DataFrame(list(parallel_map(ColourJob(), items, n_jobs))))
        groups = max(3, min(n_groups, len(colours) // 5))
        log.info("proxy groups: %d colour clusters over %d images", groups, len(colours))
        # Unreadable images share one group rather than break the split; ingest listed them.
        return proxy_groups(colours, groups, seed).reindex(table["id"]).fillna("unreadable")

    return assign
