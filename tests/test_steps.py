"""The table-level pipeline steps: nothing is dropped without a listed reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import save_image, smear_rgb

from leukbench.duplicates import cluster_duplicates
from leukbench.steps import build_splits, compute_features, run_segmentation

CLASSES = ["A", "B"]
SPLIT = {
    "seed": 7,
    "ratios": {"train": 0.64, "val": 0.2, "test": 0.16},
    "labels": {"A": ["A"], "B": ["B"]},
}


def _manifest(n_per_class: int = 25, variants: tuple[str, ...] = ("V1", "V2")) -> pd.DataFrame:
    rows = [
        {
            "id": f"{c}/img{i:03d}",
            "variant": v,
            "path": f"/x/{v}/{c}/img{i:03d}.png",
            "label": c,
            "sha256": f"{c}{i}",
            "width": 8,
            "height": 8,
            "mode": "RGB",
            "group": "",
        }
        for v in variants
        for c in CLASSES
        for i in range(n_per_class)
    ]
    return pd.DataFrame(rows)


def _clusters(manifest: pd.DataFrame, duplicate_pairs: list[tuple[str, str]]) -> pd.DataFrame:
    first = manifest[manifest["variant"] == "V1"]
    pairs = pd.DataFrame(duplicate_pairs, columns=["id_a", "id_b"])
    return cluster_duplicates(first, pairs)


def test_collapsed_duplicates_are_excluded_with_their_reason() -> None:
    manifest = _manifest()
    clusters = _clusters(manifest, [("A/img000", "A/img001"), ("A/img001", "A/img002")])
    splits, excluded = build_splits(manifest, clusters, SPLIT, collapse=True)
    assert "A/img000" in set(splits["id"])
    assert not {"A/img001", "A/img002"} & set(splits["id"])
    reasons = excluded.set_index("id")["reason"]
    assert reasons["A/img001"] == "duplicate of A/img000 (collapsed before splitting)"


def test_keeping_duplicates_reproduces_the_published_protocol() -> None:
    manifest = _manifest()
    clusters = _clusters(manifest, [("A/img000", "A/img001")])
    splits, excluded = build_splits(manifest, clusters, SPLIT, collapse=False)
    assert len(splits) == 50 and excluded.empty


def test_every_image_is_either_split_or_excluded_with_a_reason() -> None:
    manifest = _manifest()
    manifest = manifest[~((manifest["variant"] == "V2") & (manifest["id"] == "B/img004"))]
    clusters = _clusters(manifest, [("B/img010", "B/img011")])
    splits, excluded = build_splits(manifest, clusters, {**SPLIT, "n_per_class": 20}, collapse=True)
    all_ids = set(manifest["id"])
    assert set(splits["id"]) | set(excluded["id"]) == all_ids
    assert not set(splits["id"]) & set(excluded["id"])
    reasons = excluded.set_index("id")["reason"]
    assert reasons["B/img004"] == "missing from variant(s) V2"
    assert (excluded["reason"] == "not drawn by subsampling").sum() == 5 + 3
    assert splits["label"].value_counts().to_dict() == {"A": 20, "B": 20}
    assert excluded["label"].notna().all()


def test_task_labels_merge_and_drop_dataset_classes_with_a_reason() -> None:
    manifest = _manifest(n_per_class=12)
    extra = _manifest(n_per_class=12).assign(
        id=lambda t: t["id"].str.replace("A/", "C/").str.replace("B/", "D/"),
        label=lambda t: t["label"].map({"A": "C", "B": "D"}),
    )
    manifest = pd.concat([manifest, extra], ignore_index=True)
    clusters = _clusters(manifest, [])
    task = {**SPLIT, "labels": {"blast": ["A", "C"], "normal": ["B"]}, "n_per_class": "min"}
    splits, excluded = build_splits(manifest, clusters, task, collapse=True)
    assert set(splits["label"]) == {"blast", "normal"}
    assert splits["label"].value_counts().to_dict() == {"blast": 12, "normal": 12}
    assert set(splits.loc[splits["label"] == "blast", "source_label"]) <= {"A", "C"}
    reasons = excluded.set_index("id")["reason"]
    assert reasons["D/img000"] == "dataset label D is not used by this task"
    assert (reasons == "not drawn by subsampling").sum() == 12  # 24 blasts drawn down to 12
    assert set(splits["id"]) | set(excluded["id"]) == set(manifest["id"])


def test_patient_disjoint_task_refuses_images_without_patient_ids() -> None:
    from leukbench.splits import SplitError

    manifest = _manifest()
    with pytest.raises(SplitError, match="group_regex or groups_csv"):
        build_splits(manifest, _clusters(manifest, []), {**SPLIT, "protocol": "group"}, True)


def test_image_protocol_ignores_group_ids() -> None:
    manifest = _manifest().assign(group=lambda t: "P" + (t.index % 5).astype(str))
    clusters = _clusters(manifest, [])
    grouped, _ = build_splits(manifest, clusters, SPLIT, collapse=True)
    imaged, _ = build_splits(manifest, clusters, {**SPLIT, "protocol": "image"}, True)
    assert (grouped["protocol"] == "group").all() and (imaged["protocol"] == "image").all()
    assert (grouped.groupby("group")["split"].nunique() == 1).all()
    assert (imaged.groupby("group")["split"].nunique() > 1).any()


def test_segmentation_and_features_list_a_broken_image_instead_of_failing(tmp_path: Path) -> None:
    good = save_image(smear_rgb(64), tmp_path / "img" / "A" / "good.png")
    bad = tmp_path / "img" / "A" / "bad.png"
    bad.write_bytes(good.read_bytes()[:100])
    images = pd.DataFrame(
        {"id": ["A/good", "A/bad"], "label": ["A", "A"], "path": [str(good), str(bad)]}
    )
    params = {"hue": [0.7, 0.8], "saturation_min": 0.5, "value_min": 0.4}
    stats = run_segmentation(images, params, [64, 64], tmp_path / "m", tmp_path / "s", n_jobs=1)
    by_id = stats.set_index("id")
    assert by_id.loc["A/good", "error"] == "" and not by_id.loc["A/good", "flagged"]
    assert by_id.loc["A/bad", "error"] != "" and by_id.loc["A/bad", "flagged"]
    assert (tmp_path / "m" / "A" / "good.png").is_file()

    splits = pd.DataFrame({"id": ["A/good", "A/bad"]})
    table = compute_features(images, splits, tmp_path / "m", {}, n_jobs=1).set_index("id")
    assert table.loc["A/good", "error"] == ""
    assert np.isfinite(table.loc["A/good"].drop("error").astype(float)).all()
    assert "bad.png" in table.loc["A/bad", "error"]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_feature_rows_follow_id_order_whatever_the_workers(tmp_path: Path, n_jobs: int) -> None:
    rows = []
    for i in range(6):
        path = save_image(smear_rgb(48, radius=6 + i), tmp_path / "A" / f"i{i}.png")
        rows.append({"id": f"A/i{i}", "label": "A", "path": str(path)})
    images = pd.DataFrame(rows)
    params = {"hue": [0.7, 0.8], "saturation_min": 0.5, "value_min": 0.4}
    run_segmentation(images, params, None, tmp_path / "m", tmp_path / "s", n_jobs=n_jobs)
    table = compute_features(images, images[["id"]], tmp_path / "m", {}, n_jobs=n_jobs)
    assert list(table["id"]) == sorted(images["id"])
    assert table["cell_area"].is_monotonic_increasing
