"""Exact (content hash) and near (perceptual hash) duplicate audit, and collapsing clusters."""

from __future__ import annotations

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from leukbench.images import load_rgb
from leukbench.parallel import parallel_map

PAIR_COLUMNS = ["id_a", "id_b", "label_a", "label_b", "kind", "distance", "cross_class"]
CLUSTER_COLUMNS = ["id", "label", "cluster", "cluster_size", "keep", "conflict"]


def perceptual_hash(path: str, hash_size: int = 8) -> int:
    bits = imagehash.phash(Image.fromarray(load_rgb(path)), hash_size=hash_size).hash
    return int("".join("1" if b else "0" for b in bits.flatten()), 2)


def hamming_pairs(hashes: np.ndarray, max_distance: int, block: int = 1024) -> list[tuple]:
    """All (i, j, distance) with i < j and popcount(h_i ^ h_j) <= max_distance, blockwise."""
    values = hashes.astype(np.uint64)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(values), block):
        xor = values[start : start + block, None] ^ values[None, :]
        distance = np.bitwise_count(xor)
        rows, cols = np.nonzero(distance <= max_distance)
        for r, c in zip(rows, cols, strict=True):
            i = start + int(r)
            if i < c:
                pairs.append((i, int(c), int(distance[r, c])))
    return pairs


def find_duplicates(images: pd.DataFrame, max_distance: int, n_jobs: int = 1) -> pd.DataFrame:
    """Duplicate pairs among `images` (columns id, label, path, sha256).

    Exact pairs share a sha256; near pairs have perceptual-hash distance <= max_distance.
    A negative max_distance turns the near-duplicate search off.
    """
    images = images.reset_index(drop=True)
    ids, labels = images["id"].to_numpy(), images["label"].to_numpy()
    found: dict[tuple[int, int], tuple[str, int]] = {}
    for _, members in images.groupby("sha256").groups.items():
        members = sorted(members)
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                found[(a, b)] = ("exact", 0)
    if max_distance >= 0:
        hashes = np.fromiter(
            parallel_map(perceptual_hash, images["path"], n_jobs=n_jobs),
            dtype=np.uint64,
            count=len(images),
        )
        for i, j, dist in hamming_pairs(hashes, max_distance):
            found.setdefault((i, j), ("near", dist))
    rows = [
        (ids[i], ids[j], labels[i], labels[j], kind, dist, labels[i] != labels[j])
        for (i, j), (kind, dist) in sorted(found.items())
    ]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def cluster_duplicates(images: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per id: its duplicate cluster, whether it is kept when collapsing, and why not.

    The kept representative is the first id (sorted) of the cluster's majority label; clusters
    whose members disagree on the label are flagged as conflicts.
    """
    ids = images["id"].tolist()
    index = {i: n for n, i in enumerate(ids)}
    a = pairs["id_a"].map(index).to_numpy(dtype=int)
    b = pairs["id_b"].map(index).to_numpy(dtype=int)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    table = pd.DataFrame({"id": ids, "label": images["label"].to_numpy(), "component": component})
    table = table.sort_values("id").reset_index(drop=True)
    out = []
    for _, members in table.groupby("component", sort=False):
        majority = members["label"].value_counts().sort_index().idxmax()
        representative = members.loc[members["label"] == majority, "id"].iloc[0]
        conflict = members["label"].nunique() > 1
        for row in members.itertuples():
            out.append(
                (
                    row.id,
                    row.label,
                    representative,
                    len(members),
                    row.id == representative,
                    conflict,
                )
            )
    clusters = pd.DataFrame(out, columns=CLUSTER_COLUMNS)
    return clusters.sort_values("id").reset_index(drop=True)
