"""Exact and near duplicate audit, and collapsing duplicate clusters to one image each."""

from __future__ import annotations

import hashlib
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import save_image, smooth_rgb

from leukbench.duplicates import (
    CLUSTER_COLUMNS,
    PAIR_COLUMNS,
    cluster_duplicates,
    find_duplicates,
    hamming_pairs,
    perceptual_hash,
)

MAX_DISTANCE = 10


def image_table(entries: list[tuple[str, str, Path]]) -> pd.DataFrame:
    """The columns find_duplicates reads: id, label, path, sha256."""
    return pd.DataFrame(
        [
            {
                "id": i,
                "label": label,
                "path": str(path),
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
            for i, label, path in entries
        ]
    )


def pair_set(pairs: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(pairs["id_a"], pairs["id_b"], strict=True))


@pytest.fixture
def audit_images(tmp_path: Path) -> pd.DataFrame:
    """Six distinct images, plus an exact copy within a class, an exact copy across classes,
    a re-encoded JPEG and a brightened copy."""
    entries: list[tuple[str, str, Path]] = []
    for n in range(6):
        label = "A" if n < 3 else "B"
        path = save_image(smooth_rgb(seed=n, size=64), tmp_path / label / f"img{n}.png")
        entries.append((f"{label}/img{n}", label, path))
    base = smooth_rgb(seed=0, size=64)  # A/img0
    copy_within = tmp_path / "A" / "copy_within.png"
    shutil.copyfile(tmp_path / "A" / "img0.png", copy_within)
    copy_across = tmp_path / "B" / "copy_across.png"
    shutil.copyfile(tmp_path / "A" / "img1.png", copy_across)
    jpeg_90 = save_image(smooth_rgb(seed=2, size=64), tmp_path / "A" / "q90.jpg", quality=90)
    jpeg_60 = save_image(smooth_rgb(seed=2, size=64), tmp_path / "B" / "q60.jpg", quality=60)
    brighter = np.clip(base.astype(int) + 12, 0, 255).astype(np.uint8)
    bright = save_image(brighter, tmp_path / "A" / "bright.png")
    entries += [
        ("A/copy_within", "A", copy_within),
        ("B/copy_across", "B", copy_across),
        ("A/q90", "A", jpeg_90),
        ("B/q60", "B", jpeg_60),
        ("A/bright", "A", bright),
    ]
    return image_table(entries)


def test_perceptual_hash_is_a_64_bit_integer(audit_images: pd.DataFrame) -> None:
    value = perceptual_hash(audit_images["path"].iloc[0])
    assert isinstance(value, int)
    assert 0 <= value < 2**64


def test_distinct_images_are_far_apart(audit_images: pd.DataFrame) -> None:
    hashes = [perceptual_hash(p) for p in audit_images["path"].iloc[:6]]
    for a, b in combinations(hashes, 2):
        assert bin(a ^ b).count("1") > MAX_DISTANCE


def test_exact_and_near_duplicates(audit_images: pd.DataFrame) -> None:
    pairs = find_duplicates(audit_images, max_distance=MAX_DISTANCE)
    assert list(pairs.columns) == PAIR_COLUMNS
    by_pair = {(r.id_a, r.id_b): r for r in pairs.itertuples()}

    exact_within = by_pair[("A/img0", "A/copy_within")]
    assert exact_within.kind == "exact" and exact_within.distance == 0
    assert not exact_within.cross_class
    exact_across = by_pair[("A/img1", "B/copy_across")]
    assert (exact_across.kind, exact_across.cross_class) == ("exact", True)
    assert (exact_across.label_a, exact_across.label_b) == ("A", "B")

    reencoded = by_pair[("A/q90", "B/q60")]
    assert reencoded.kind == "near" and reencoded.cross_class
    assert 0 <= reencoded.distance <= MAX_DISTANCE
    # A/img2 is the lossless original of both JPEGs
    assert by_pair[("A/img2", "A/q90")].kind == "near"
    assert by_pair[("A/img2", "B/q60")].kind == "near"

    brightened = by_pair[("A/img0", "A/bright")]
    assert brightened.kind == "near" and brightened.distance <= MAX_DISTANCE

    # nothing pairs two of the six distinct images, and every pair is listed once with i < j
    distinct = {f"{label}/img{n}" for n, label in enumerate("AAABBB")}
    assert not any(a in distinct and b in distinct for a, b in pair_set(pairs))
    assert len(pairs) == len(pair_set(pairs))
    position = {i: n for n, i in enumerate(audit_images["id"])}
    assert all(position[a] < position[b] for a, b in pair_set(pairs))


def test_negative_max_distance_turns_near_search_off(audit_images: pd.DataFrame) -> None:
    pairs = find_duplicates(audit_images, max_distance=-1)
    assert pair_set(pairs) == {("A/img0", "A/copy_within"), ("A/img1", "B/copy_across")}
    assert (pairs["kind"] == "exact").all()


def test_max_distance_zero_finds_only_identical_hashes(audit_images: pd.DataFrame) -> None:
    pairs = find_duplicates(audit_images, max_distance=0)
    assert (pairs["distance"] == 0).all()
    assert {("A/img0", "A/copy_within"), ("A/img1", "B/copy_across")} <= pair_set(pairs)


def test_two_workers_find_the_same_pairs(audit_images: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        find_duplicates(audit_images, MAX_DISTANCE, n_jobs=1),
        find_duplicates(audit_images, MAX_DISTANCE, n_jobs=2),
    )


def test_no_images_no_pairs() -> None:
    empty = pd.DataFrame(columns=["id", "label", "path", "sha256"])
    pairs = find_duplicates(empty, max_distance=MAX_DISTANCE)
    assert pairs.empty and list(pairs.columns) == PAIR_COLUMNS


@pytest.mark.parametrize(("max_distance", "block"), [(20, 1024), (26, 7), (0, 5), (64, 50)])
def test_hamming_pairs_matches_brute_force(max_distance: int, block: int) -> None:
    rng = np.random.default_rng(max_distance)
    hashes = rng.integers(0, 2**64, size=150, dtype=np.uint64, endpoint=False)
    hashes[10] = hashes[3]  # guarantee a distance-0 pair
    hashes[20] = hashes[4] ^ np.uint64(0b1011)  # and a distance-3 pair
    expected = []
    for i, j in combinations(range(len(hashes)), 2):
        distance = bin(int(hashes[i]) ^ int(hashes[j])).count("1")
        if distance <= max_distance:
            expected.append((i, j, distance))
    found = hamming_pairs(hashes, max_distance, block=block)
    assert sorted(found) == expected
    if max_distance == 64:
        assert len(found) == 150 * 149 // 2


def test_hamming_pairs_uses_all_64_bits() -> None:
    top = np.uint64(1) << np.uint64(63)
    hashes = np.array([0, top, top | np.uint64(1)], dtype=np.uint64)
    assert sorted(hamming_pairs(hashes, 1)) == [(0, 1, 1), (1, 2, 1)]


# --- clusters ------------------------------------------------------------------------------------


def pairs_table(edges: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([(a, b, "", "", "exact", 0, False) for a, b in edges], columns=PAIR_COLUMNS)


def test_cluster_duplicates() -> None:
    images = pd.DataFrame(
        {
            # listed out of order on purpose: the representative is chosen among sorted ids
            "id": ["c", "a", "b", "d", "e", "f", "g", "h", "z"],
            "label": ["X", "Y", "X", "X", "Y", "Y", "X", "X", "Y"],
        }
    )
    # clusters: {a, b, c, d} (X majority, conflict), {e, f} (all Y), {g, h} via a chain, z alone
    pairs = pairs_table([("a", "b"), ("b", "c"), ("d", "c"), ("e", "f"), ("h", "g")])
    clusters = cluster_duplicates(images, pairs)
    assert list(clusters.columns) == CLUSTER_COLUMNS
    assert clusters["id"].tolist() == sorted(images["id"])
    table = clusters.set_index("id")

    abcd = table.loc[["a", "b", "c", "d"]]
    assert (abcd["cluster"] == "b").all()  # first sorted id of the majority label X
    assert (abcd["cluster_size"] == 4).all()
    assert abcd["conflict"].all()
    assert table.loc[["e", "f"], "cluster"].eq("e").all()
    assert not table.loc[["e", "f"], "conflict"].any()
    assert table.loc[["g", "h"], "cluster"].eq("g").all()
    assert table.loc["z", "cluster"] == "z" and table.loc["z", "cluster_size"] == 1
    assert not table.loc["z", "conflict"]

    kept = sorted(clusters.loc[clusters["keep"], "id"])
    assert kept == ["b", "e", "g", "z"]
    # exactly one kept per cluster
    assert clusters.groupby("cluster")["keep"].sum().eq(1).all()
    assert clusters["label"].tolist() == table.loc[sorted(images["id"]), "label"].tolist()


def test_cluster_with_a_tied_vote_is_still_collapsed_to_one() -> None:
    images = pd.DataFrame({"id": ["p", "q"], "label": ["Y", "X"]})
    clusters = cluster_duplicates(images, pairs_table([("p", "q")]))
    assert clusters["keep"].sum() == 1
    assert clusters["conflict"].all()
    assert clusters["cluster"].nunique() == 1


def test_no_pairs_every_image_is_its_own_cluster() -> None:
    images = pd.DataFrame({"id": ["b", "a"], "label": ["X", "Y"]})
    clusters = cluster_duplicates(images, pairs_table([]))
    assert clusters["keep"].all()
    assert clusters["cluster"].tolist() == ["a", "b"]
    assert (clusters["cluster_size"] == 1).all()
    assert not clusters["conflict"].any()


def test_audit_to_clusters_end_to_end(audit_images: pd.DataFrame) -> None:
    pairs = find_duplicates(audit_images, max_distance=MAX_DISTANCE)
    clusters = cluster_duplicates(audit_images, pairs)
    table = clusters.set_index("id")
    assert table.loc["A/copy_within", "cluster"] == "A/bright"  # first of the sorted ids
    assert table.loc["A/bright", "keep"] and not table.loc["A/img0", "keep"]
    assert table.loc[["A/img0", "A/copy_within", "A/bright"], "cluster_size"].eq(3).all()
    assert table.loc["B/copy_across", "conflict"]
    # six clusters remain out of eleven images: two duplicates of img0, one of img1, two of img2
    assert clusters["keep"].sum() == 11 - 2 - 1 - 2
