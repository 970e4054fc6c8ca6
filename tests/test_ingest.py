"""ingest(): every file ends up in the manifest or in the rejected list, with its reason."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import CLASSES, VARIANTS, DatasetFactory, save_image, smooth_rgb, write_truncated
from PIL import Image

from leukbench.ingest import MANIFEST_COLUMNS, REJECTED_COLUMNS, DatasetError, ingest, shared_ids

DATASET = "kaggle_all"


def add_bad_files(variant_dir: Path) -> dict[Path, str]:
    """Sprinkle unusable files into a variant folder; return {path: expected reason fragment}."""
    bad: dict[Path, str] = {}
    empty = variant_dir / "Benign" / "empty.jpg"
    empty.touch()
    bad[empty] = "zero-byte file"
    cut = write_truncated(smooth_rgb(seed=77, size=64), variant_dir / "Early" / "cut.jpg", "JPEG")
    bad[cut] = "corrupt or truncated"
    text = variant_dir / "Pre" / "notes.jpg"
    text.write_text("not an image")
    bad[text] = "not a readable image"
    readme = variant_dir / "Pro" / "readme.txt"
    readme.write_text("hello")
    bad[readme] = "not an image file (extension '.txt')"
    hidden = variant_dir / "Pro" / ".DS_Store"
    hidden.write_bytes(b"\x00\x01")
    bad[hidden] = "hidden file"
    stray = save_image(smooth_rgb(seed=78), variant_dir / "stray.png")
    bad[stray] = "not inside a class folder"
    return bad


def test_manifest_and_rejected_list(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(n_per_class=3)
    bad = add_bad_files(root / "Original")
    manifest, rejected = ingest(DATASET, root, VARIANTS, CLASSES)

    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert list(rejected.columns) == REJECTED_COLUMNS

    # every bad file is rejected with the right reason, and nothing else is
    reasons = dict(zip(rejected["path"], rejected["reason"], strict=True))
    assert set(reasons) == {str(p) for p in bad}
    for path, fragment in bad.items():
        assert fragment in reasons[str(path)], (path, reasons[str(path)])
    assert (rejected["variant"] == "Original").all()
    assert not set(rejected["path"]) & set(manifest["path"])

    # every good file is in the manifest, once, with correct columns
    assert len(manifest) == len(VARIANTS) * len(CLASSES) * 3
    assert not manifest.duplicated(["variant", "id"]).any()
    for row in manifest.itertuples():
        path = Path(row.path)
        assert path == root / row.variant / f"{row.id}.png"
        assert row.label == path.parent.name
        assert row.id == f"{row.label}/{path.stem}"
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        with Image.open(path) as image:
            assert (row.width, row.height, row.mode) == (*image.size, image.mode)
        assert row.group == ""
    assert (manifest[["width", "height"]] == 32).all().all()
    assert manifest.groupby(["variant", "label"]).size().eq(3).all()


def test_files_in_nested_folders_keep_their_class(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(n_per_class=1)
    save_image(smooth_rgb(seed=5), root / "Original" / "Pre" / "batch2" / "extra.png")
    manifest, rejected = ingest(DATASET, root, ["Original"], CLASSES)
    row = manifest.set_index("id").loc["Pre/batch2/extra"]
    assert row["label"] == "Pre"
    assert rejected.empty


def test_same_name_with_two_extensions_does_not_give_two_rows_with_one_id(
    dataset_factory: DatasetFactory,
) -> None:
    """Ids drop the extension, so x.png and x.jpg would collide; one of them must be rejected."""
    root = dataset_factory(n_per_class=1)
    save_image(smooth_rgb(seed=6), root / "Original" / "Benign" / "twin.png")
    save_image(smooth_rgb(seed=6), root / "Original" / "Benign" / "twin.jpg")
    manifest, rejected = ingest(DATASET, root, ["Original"], CLASSES)
    assert not manifest["id"].duplicated().any()
    assert (manifest["id"] == "Benign/twin").sum() == 1
    assert len(rejected) == 1
    assert "twin" in rejected["path"].iloc[0]
    assert "Benign/twin" in rejected["reason"].iloc[0]


def test_missing_class_folder(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(n_per_class=1)
    shutil.rmtree(root / "Segmented" / "Pre")
    with pytest.raises(DatasetError) as caught:
        ingest(DATASET, root, VARIANTS, CLASSES)
    message = str(caught.value)
    assert "'Pre'" in message
    assert str(root / "Segmented") in message
    assert f"datasets.{DATASET}.classes" in message


def test_unknown_class_folder(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(n_per_class=1)
    save_image(smooth_rgb(seed=1), root / "Original" / "Blast" / "x.png")
    with pytest.raises(DatasetError) as caught:
        ingest(DATASET, root, VARIANTS, CLASSES)
    message = str(caught.value)
    assert "'Blast'" in message
    assert str(root / "Original") in message
    assert f"datasets.{DATASET}.classes" in message


def test_hidden_folders_are_not_unknown_classes(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(n_per_class=1)
    (root / "Original" / ".ipynb_checkpoints").mkdir()
    manifest, _ = ingest(DATASET, root, ["Original"], CLASSES)
    assert len(manifest) == len(CLASSES)


def test_missing_variant_folder(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(variants=["Original"], n_per_class=1)
    with pytest.raises(DatasetError) as caught:
        ingest(DATASET, root, VARIANTS, CLASSES)
    message = str(caught.value)
    assert str(root / "Segmented") in message
    assert f"datasets.{DATASET}.path" in message
    assert f"datasets.{DATASET}.variants" in message


def test_class_folder_with_only_bad_images(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(n_per_class=2)
    for path in (root / "Segmented" / "Early").iterdir():
        path.write_bytes(b"")  # every Early image of this variant is now a zero-byte file
    with pytest.raises(DatasetError) as caught:
        ingest(DATASET, root, VARIANTS, CLASSES)
    message = str(caught.value)
    assert "'Early'" in message
    assert str(root / "Segmented") in message
    assert f"datasets.{DATASET}.classes" in message
    assert "no usable images" in message


def write_named(root: Path, names: dict[str, list[str]]) -> None:
    """root/Original/<class>/<name>.png for each class's names, each a distinct image."""
    for c, (cls, files) in enumerate(names.items()):
        for n, name in enumerate(files):
            save_image(smooth_rgb(seed=100 * c + n, size=16), root / "Original" / cls / name)


def test_group_regex_first_group(tmp_path: Path) -> None:
    write_named(tmp_path, {"A": ["P01_1.png", "P01_2.png"], "B": ["P02_1.png", "P17_3.png"]})
    manifest, rejected = ingest("d", tmp_path, ["Original"], ["A", "B"], group_regex=r"^(P\d+)_")
    assert dict(zip(manifest["id"], manifest["group"], strict=True)) == {
        "A/P01_1": "P01",
        "A/P01_2": "P01",
        "B/P02_1": "P02",
        "B/P17_3": "P17",
    }
    assert rejected.empty


def test_group_regex_named_group_wins_over_the_first_group(tmp_path: Path) -> None:
    write_named(tmp_path, {"A": ["UID_11_3_1_all.png"], "B": ["UID_H5_7_2_hem.png"]})
    regex = r"^(UID)_(?P<group>[^_]+)_"
    manifest, _ = ingest("d", tmp_path, ["Original"], ["A", "B"], group_regex=regex)
    assert sorted(manifest["group"]) == ["11", "H5"]


def test_group_regex_without_groups_uses_the_whole_match(tmp_path: Path) -> None:
    write_named(tmp_path, {"A": ["p1-x.png"], "B": ["p2-y.png"]})
    manifest, _ = ingest("d", tmp_path, ["Original"], ["A", "B"], group_regex=r"p\d")
    assert sorted(manifest["group"]) == ["p1", "p2"]


def test_file_not_matching_group_regex_is_rejected(tmp_path: Path) -> None:
    write_named(tmp_path, {"A": ["P01_1.png", "odd.png"], "B": ["P02_1.png"]})
    manifest, rejected = ingest("d", tmp_path, ["Original"], ["A", "B"], group_regex=r"^(P\d+)_")
    assert sorted(manifest["id"]) == ["A/P01_1", "B/P02_1"]
    assert rejected["path"].tolist() == [str(tmp_path / "Original" / "A" / "odd.png")]
    assert "group_regex" in rejected["reason"].iloc[0]


def test_shared_ids_excludes_an_image_missing_from_one_variant(
    dataset_factory: DatasetFactory,
) -> None:
    root = dataset_factory(n_per_class=2)
    (root / "Segmented" / "Pro" / "Pro-001.png").unlink()
    manifest, _ = ingest(DATASET, root, VARIANTS, CLASSES)
    complete, missing = shared_ids(manifest)
    all_ids = set(manifest["id"])
    assert complete == all_ids - {"Pro/Pro-001"}
    assert missing.to_dict("records") == [
        {"id": "Pro/Pro-001", "reason": "missing from variant(s) Segmented"}
    ]


def test_shared_ids_with_nothing_missing(dataset_factory: DatasetFactory) -> None:
    manifest, _ = ingest(DATASET, dataset_factory(n_per_class=1), VARIANTS, CLASSES)
    complete, missing = shared_ids(manifest)
    assert complete == set(manifest["id"])
    assert missing.empty
    assert list(missing.columns) == ["id", "reason"]


def test_two_workers_give_the_same_result_as_one(dataset_factory: DatasetFactory) -> None:
    root = dataset_factory(n_per_class=3)
    add_bad_files(root / "Segmented")
    serial = ingest(DATASET, root, VARIANTS, CLASSES, n_jobs=1)
    parallel = ingest(DATASET, root, VARIANTS, CLASSES, n_jobs=2)
    for one, two in zip(serial, parallel, strict=True):
        pd.testing.assert_frame_equal(one, two)
