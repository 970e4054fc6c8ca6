"""Dataset converter: a folder of `[<variant>/][<class root>/]<class>/...<image>` into one manifest.

Every file found ends up either in the manifest or in the rejected list with its reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from leukbench.images import ImageError, inspect_image, rejection_reason, sha256_file
from leukbench.parallel import parallel_map

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["id", "variant", "path", "label", "sha256", "width", "height", "mode", "group"]
REJECTED_COLUMNS = ["variant", "path", "reason"]


class DatasetError(ValueError):
    """A dataset layout problem that makes the whole dataset unusable."""


@dataclass(frozen=True)
class Candidate:
    variant: str
    label: str
    path: Path
    root: Path
    class_dir: Path


def _check_class_folders(variant_dir: Path, classes: list[str], dataset: str) -> None:
    if not variant_dir.is_dir():
        raise DatasetError(
            f"dataset '{dataset}': variant folder {variant_dir} does not exist; "
            f"fix datasets.{dataset}.path or datasets.{dataset}.variants in the config"
        )
    found = sorted(
        p.name for p in variant_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    missing = [c for c in classes if c not in found]
    unknown = [f for f in found if f not in classes]
    if missing:
        raise DatasetError(
            f"dataset '{dataset}': class folder(s) {missing} missing in {variant_dir} "
            f"(found {found}); fix datasets.{dataset}.classes or the folder layout"
        )
    if unknown:
        raise DatasetError(
            f"dataset '{dataset}': unknown class folder(s) {unknown} in {variant_dir}; "
            f"add them to datasets.{dataset}.classes or move them out of the dataset"
        )


def find_candidates(
    root: Path,
    variants: list[str],
    classes: list[str],
    dataset: str,
    flat: bool = False,
    class_roots: list[str] | None = None,
) -> tuple[list[Candidate], list[dict]]:
    """List every file under each class root of each variant; stray files are rejected.

    `flat`: `root` holds the class folders itself (one variant, which is just a name).
    `class_roots`: folders below the variant folder that each hold the class folders (e.g. the
    training folds of C-NMC 2019); default the variant folder itself.
    """
    candidates: list[Candidate] = []
    rejected: list[dict] = []
    for variant in variants:
        variant_dir = root if flat else root / variant
        for class_root in class_roots or ["."]:
            base = (variant_dir / class_root) if class_root != "." else variant_dir
            _check_class_folders(base, classes, dataset)
            for path in sorted(p for p in base.rglob("*") if not p.is_dir()):
                rel = path.relative_to(base)
                if len(rel.parts) < 2 or rel.parts[0] not in classes:
                    rejected.append(
                        {
                            "variant": variant,
                            "path": str(path),
                            "reason": "not inside a class folder",
                        }
                    )
                    continue
                candidates.append(
                    Candidate(variant, rel.parts[0], path, variant_dir, base / rel.parts[0])
                )
    return candidates, rejected


def _examine(
    candidate: Candidate, group_regex: str | None, groups: dict[str, str] | None = None
) -> dict:
    path = candidate.path
    row: dict = {"variant": candidate.variant, "path": str(path)}
    reason = rejection_reason(path)
    if reason is None:
        try:
            info = inspect_image(path)
        except ImageError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
    if reason is not None:
        row["reason"] = reason
        return row
    rel = path.relative_to(candidate.root).with_suffix("")
    group = ""
    if group_regex:
        # Searched in the path below the class folder, so a patient folder can be the group.
        within_class = path.relative_to(candidate.class_dir).as_posix()
        match = re.search(group_regex, within_class)
        if match is None:
            row["reason"] = f"path {within_class!r} does not match group_regex {group_regex!r}"
            return row
        group = match.groupdict().get("group") or match.group(1 if match.groups() else 0)
    elif groups is not None:
        if path.name not in groups:
            row["reason"] = "no group id for this file in groups_csv"
            return row
        group = groups[path.name]
    row.update(
        id=rel.as_posix(),
        label=candidate.label,
        sha256=sha256_file(path),
        width=info.width,
        height=info.height,
        mode=info.mode,
        group=group,
    )
    return row


def ingest(
    dataset: str,
    root: Path,
    variants: list[str],
    classes: list[str],
    group_regex: str | None = None,
    n_jobs: int = 1,
    flat: bool = False,
    groups_csv: Path | None = None,
    class_roots: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (manifest, rejected). Raises DatasetError for layout problems or empty classes.

    Group (patient) ids come from `group_regex` on the file name, or from `groups_csv` (columns
    `file` and `group`, file names without folders).
    """
    root = Path(root)
    candidates, rejected = find_candidates(
        root, variants, classes, dataset, flat=flat, class_roots=class_roots
    )
    accepted: list[dict] = []
    groups = read_groups_csv(groups_csv, dataset) if groups_csv else None
    examine = partial(_examine, group_regex=group_regex, groups=groups)
    first_path: dict[tuple[str, str], str] = {}  # ids drop the extension: x.jpg and x.png clash
    for row in parallel_map(examine, candidates, n_jobs=n_jobs):
        if "reason" not in row:
            key = (row["variant"], row["id"])
            if key in first_path:
                row = {
                    "variant": row["variant"],
                    "path": row["path"],
                    "reason": f"duplicate id '{row['id']}': {first_path[key]} has the same "
                    "name with another extension",
                }
            else:
                first_path[key] = row["path"]
        (rejected if "reason" in row else accepted).append(row)
    manifest = pd.DataFrame(accepted, columns=MANIFEST_COLUMNS)
    rejected_df = pd.DataFrame(rejected, columns=REJECTED_COLUMNS)
    for variant in variants:
        counts = manifest.loc[manifest["variant"] == variant, "label"].value_counts()
        empty = [c for c in classes if counts.get(c, 0) == 0]
        if empty:
            raise DatasetError(
                f"dataset '{dataset}': class folder(s) {empty} in {root / variant} contain no "
                "usable images (see the rejected list in the log); add images or remove the "
                f"class from datasets.{dataset}.classes"
            )
    for row in rejected_df.itertuples():
        log.warning("rejected %s: %s", row.path, row.reason)
    log.info("%s: %d images accepted, %d files rejected", dataset, len(manifest), len(rejected_df))
    return manifest, rejected_df


def read_groups_csv(path: Path, dataset: str) -> dict[str, str]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise DatasetError(
            f"dataset '{dataset}': cannot read groups_csv {path} ({exc}); fix "
            f"datasets.{dataset}.groups_csv"
        ) from exc
    missing = {"file", "group"} - set(table.columns)
    if missing:
        raise DatasetError(
            f"dataset '{dataset}': groups_csv {path} lacks column(s) {sorted(missing)}; it needs "
            "'file' (image file name) and 'group' (patient or slide id)"
        )
    return dict(zip(table["file"], table["group"], strict=True))


def shared_ids(manifest: pd.DataFrame) -> tuple[set[str], pd.DataFrame]:
    """Ids present in every variant, plus the ids excluded because some variant lacks them."""
    variants = manifest["variant"].unique()
    per_id = manifest.groupby("id")["variant"].agg(set)
    complete = {i for i, vs in per_id.items() if len(vs) == len(variants)}
    missing = [
        {"id": i, "reason": "missing from variant(s) " + ",".join(sorted(set(variants) - vs))}
        for i, vs in per_id.items()
        if i not in complete
    ]
    return complete, pd.DataFrame(missing, columns=["id", "reason"])
