"""Exploratory data analysis of one ingested dataset, for the notebook workflow/notebooks/eda.ipynb.

The functions read the workflow's own tables (manifest, rejected files, duplicate pairs and
clusters, segmentation stats) and return a pandas table or a matplotlib figure. Images are read
one at a time from the manifest paths, for a seeded sample per class only; nothing loads the
whole dataset.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state, no backend):
:func:`show` saves one as PNG and returns a :class:`PngImage`, which a Jupyter kernel displays
as an image without any matplotlib set-up.

:func:`run_notebook` executes the notebook with papermill on a kernel of this very interpreter
(never a kernel spec found on the machine), and :func:`export_html` writes the executed
notebook as one self-contained HTML page (images inlined, no scripts fetched from the web).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from leukbench.images import to_hsv, to_rgb
from leukbench.smk import read_tsv

#: Section headings of the notebook, in order (the tests look for them in the HTML).
SECTIONS = (
    "Class balance",
    "Sample images",
    "Image sizes and modes",
    "Colour statistics",
    "Segmentation QC",
    "Duplicates",
)
CHANNELS = ("R", "G", "B", "H", "S", "V")
KERNEL_NAME = "leukbench-python"
SCRIPTS_ROOT = Path(__file__).resolve().parents[1]  # workflow/scripts: where leukbench lives


# --------------------------------------------------------------------------------------------
# Display helpers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class PngImage:
    """PNG bytes that a Jupyter kernel shows as an image (``_repr_png_``); `alt` becomes the
    image's alternative text in the exported HTML."""

    data: bytes
    alt: str = ""

    def __repr__(self) -> str:  # the text/plain fallback: short, never the bytes
        return f"<PNG image, {len(self.data)} bytes>"

    @classmethod
    def from_file(cls, path: str | Path, alt: str = "") -> PngImage:
        return cls(Path(path).read_bytes(), alt)

    def _repr_png_(self) -> bytes | tuple[bytes, dict[str, str]]:
        return (self.data, {"alt": self.alt}) if self.alt else self.data


@dataclass(frozen=True, repr=False)
class Html:
    """A snippet of HTML that a Jupyter kernel shows as such (``_repr_html_``)."""

    text: str

    def __repr__(self) -> str:
        return html.unescape(re.sub(r"<[^>]+>", " ", self.text)).strip()

    def _repr_html_(self) -> str:
        return self.text


def heading(title: str, subtitle: str = "") -> Html:
    """The dataset's title under the notebook's own, from its parameters (markdown cells
    cannot read parameters)."""
    sub = f"<br>{html.escape(subtitle)}" if subtitle else ""
    return Html(f'<p style="font-size: 1.3em"><strong>{html.escape(title)}</strong>{sub}</p>')


def show(
    figure: Figure, folder: str | Path, name: str, alt: str | None = None, dpi: int = 100
) -> PngImage:
    """Save `figure` as ``<folder>/<name>.png`` and return it for display (`alt`: its
    alternative text, by default the name)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    data = buffer.getvalue()
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{name}.png").write_bytes(data)
    return PngImage(data, name.replace("_", " ") if alt is None else alt)


def _message(text: str, size: tuple[float, float] = (5, 1.2)) -> Figure:
    figure = Figure(figsize=size)
    axis = figure.subplots()
    axis.text(0.5, 0.5, text, ha="center", va="center")
    axis.set_axis_off()
    return figure


def read_table(path: str | Path) -> pd.DataFrame:
    """A workflow TSV (empty cells stay empty strings)."""
    return read_tsv(path)


def variant_of(stats_path: str | Path) -> str:
    """The variant of ``results/<dataset>/<variant>/segmentation/<file>``."""
    return Path(stats_path).parent.parent.name


# --------------------------------------------------------------------------------------------
# Overview and class balance
# --------------------------------------------------------------------------------------------


def overview(manifest: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    """Per variant: images, distinct classes, patient groups (when known) and rejected files."""
    variants = list(dict.fromkeys([*manifest["variant"], *rejected["variant"]]))
    rows = []
    for variant in variants:
        images = manifest[manifest["variant"] == variant]
        groups = images["group"].astype(str)
        rows.append(
            {
                "variant": variant,
                "images": len(images),
                "classes": images["label"].nunique(),
                "groups": groups[groups != ""].nunique(),
                "rejected": int((rejected["variant"] == variant).sum()),
            }
        )
    columns = ["variant", "images", "classes", "groups", "rejected"]
    return pd.DataFrame(rows, columns=columns).set_index("variant")


def class_balance(manifest: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Images per variant (rows) and class (columns, config order), with the total and the
    imbalance ratio (largest class / smallest class)."""
    counts = pd.crosstab(manifest["variant"], manifest["label"]).reindex(
        columns=list(classes), fill_value=0
    )
    counts.columns.name = None
    smallest = counts.min(axis=1).replace(0, np.nan)
    counts["total"] = counts[list(classes)].sum(axis=1)
    counts["imbalance"] = (counts[list(classes)].max(axis=1) / smallest).round(2)
    return counts


def class_balance_figure(balance: pd.DataFrame) -> Figure:
    """Grouped bars: images per class, one bar per variant."""
    counts = balance.drop(columns=["total", "imbalance"], errors="ignore")
    if counts.empty:
        return _message("no images in the manifest")
    classes, variants = list(counts.columns), list(counts.index)
    figure = Figure(figsize=(max(4.0, 0.6 * len(classes) * max(len(variants), 1) + 1.5), 3.2))
    axis = figure.subplots()
    width = 0.8 / len(variants)
    x = np.arange(len(classes))
    for n, variant in enumerate(variants):
        axis.bar(
            x + (n - (len(variants) - 1) / 2) * width, counts.loc[variant], width, label=variant
        )
    axis.set_xticks(x, classes, rotation=45 if len(classes) > 6 else 0, ha="right")
    axis.set_ylabel("images")
    axis.legend(title="variant", fontsize=8)
    axis.set_title("Images per class")
    figure.tight_layout()
    return figure


def reason_kind(reason: str, width: int = 80) -> str:
    """A rejection reason without its particulars, so that like reasons count together:
    quoted names become '…', a trailing parenthesis and anything after ': ' are dropped
    ("not an image file (extension '.txt')" -> "not an image file")."""
    kind = re.sub(r"'[^']*'", "'…'", reason.strip())
    kind = re.sub(r"\s*\(.*\)$", "", kind)
    return kind.split(": ", 1)[0].strip()[:width]


def rejected_reasons(rejected: pd.DataFrame) -> pd.DataFrame:
    """Rejected files per variant and kind of reason (:func:`reason_kind`), with one example."""
    columns = ["variant", "reason", "files", "example"]
    if rejected.empty:
        return pd.DataFrame(columns=columns)
    kinds = rejected.assign(kind=[reason_kind(str(r)) for r in rejected["reason"]])
    table = (
        kinds.groupby(["variant", "kind"], sort=False)
        .agg(files=("path", "size"), example=("path", "first"))
        .reset_index()
        .rename(columns={"kind": "reason"})
    )
    return table.sort_values(["variant", "files"], ascending=[True, False], kind="stable")[
        columns
    ].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Samples and thumbnails
# --------------------------------------------------------------------------------------------


def _class_rng(seed: int, label: str) -> np.random.Generator:
    # One stream per class: a class's sample does not move when another class changes.
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def sample_ids(
    manifest: pd.DataFrame, classes: Sequence[str], per_class: int, seed: int, variant: str
) -> pd.DataFrame:
    """A seeded sample of up to `per_class` images of each class in one variant.

    Deterministic for a given seed and set of ids, whatever the row order of the manifest; the
    same ids are drawn in every variant that holds them. Rows come out in class order, then id.
    """
    images = manifest[manifest["variant"] == variant].sort_values("id", kind="stable")
    chosen = []
    for label in classes:
        members = images[images["label"] == label]
        pick = _class_rng(seed, label).permutation(len(members))[:per_class]
        chosen.append(members.iloc[np.sort(pick)])
    return pd.concat(chosen) if chosen else images.head(0)


def load_thumbnail(path: str | Path, size: int) -> np.ndarray:
    """`path` as RGB uint8 no larger than size x size (JPEGs are decoded at reduced scale)."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        rgb = to_rgb(image, path)
    thumb = Image.fromarray(rgb)
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(thumb)


def sample_grid(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    per_class: int,
    seed: int,
    variant: str,
    thumb_px: int = 96,
) -> Figure:
    """One row per class, `per_class` thumbnails of a seeded sample (see :func:`sample_ids`)."""
    sample = sample_ids(manifest, classes, per_class, seed, variant)
    if sample.empty or per_class < 1:
        return _message(f"no images in variant {variant}")
    rows, cols = len(classes), per_class
    figure = Figure(figsize=(1.25 * cols + 0.8, 1.3 * rows + 0.3))
    axes = figure.subplots(rows, cols, squeeze=False)
    for row, label in zip(axes, classes, strict=True):
        members = sample[sample["label"] == label]
        for axis, image in zip(row, [*members.itertuples(), *[None] * cols], strict=False):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if image is None:
                continue
            try:
                axis.imshow(load_thumbnail(image.path, thumb_px))
            except (OSError, ValueError) as exc:  # moved or damaged since ingestion
                axis.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=7)
                axis.set_title(type(exc).__name__, fontsize=6)
                continue
            axis.set_title(Path(str(image.id)).name[:24], fontsize=6)
        row[0].set_ylabel(f"{label}\n(n={len(members)})", fontsize=8)
    figure.suptitle(f"{variant}: random images per class (seed {seed})", fontsize=9)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------------------------
# Sizes and modes
# --------------------------------------------------------------------------------------------


def size_mode_table(manifest: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """Images per variant, width x height and mode, most common first; past `top` rows per
    variant the rest are summed into one 'other' row."""
    counts = (
        manifest.groupby(["variant", "width", "height", "mode"])
        .size()
        .rename("images")
        .reset_index()
    )
    out = []
    for variant, rows in counts.groupby("variant", sort=False):
        rows = rows.sort_values(["images", "width", "height"], ascending=[False, True, True])
        total = rows["images"].sum()
        kept, rest = rows.head(top).copy(), rows.iloc[top:]
        if len(rest):
            other = {"variant": variant, "width": "other", "height": "", "mode": ""}
            kept = pd.concat([kept, pd.DataFrame([{**other, "images": rest["images"].sum()}])])
        kept["share"] = (kept["images"] / total).round(4)
        out.append(kept)
    if not out:
        return pd.DataFrame(columns=["variant", "width", "height", "mode", "images", "share"])
    return pd.concat(out).reset_index(drop=True)


def size_summary(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per variant: smallest, median and largest width and height, and the modes seen."""
    grouped = manifest.groupby("variant", sort=False)
    table = grouped[["width", "height"]].agg(["min", "median", "max"])
    table.columns = [f"{side} {stat}" for side, stat in table.columns]
    table["modes"] = grouped["mode"].agg(lambda modes: ", ".join(sorted(set(map(str, modes)))))
    return table


# --------------------------------------------------------------------------------------------
# Colour statistics, streamed one image at a time
# --------------------------------------------------------------------------------------------


@dataclass
class RunningMoments:
    """Pixel count, mean and sum of squared deviations per channel, merged image by image
    (Chan et al.'s pairwise update: exact, and never holds more than one image)."""

    channels: int
    n: int = 0
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.mean = np.zeros(self.channels)
        self.m2 = np.zeros(self.channels)

    def add(self, values: np.ndarray) -> None:
        """Merge a (pixels, channels) block."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.channels)
        count = len(values)
        if count == 0:
            return
        mean = values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        total = self.n + count
        delta = mean - self.mean
        self.mean = self.mean + delta * count / total
        self.m2 = self.m2 + m2 + delta**2 * self.n * count / total
        self.n = total

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.n) if self.n else np.full(self.channels, np.nan)


def colour_statistics(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    per_class: int,
    seed: int,
    max_side: int | None = None,
) -> pd.DataFrame:
    """Mean and standard deviation over pixels of R, G, B (0-255) and H, S, V (0-1), per
    variant and class, from a seeded sample of up to `per_class` images per class.

    Images are read one at a time (reduced to at most `max_side` pixels when given); hue is
    circular, so its mean is indicative only. Unreadable files are counted, not fatal.
    """
    rows = []
    for variant in dict.fromkeys(manifest["variant"]):
        sample = sample_ids(manifest, classes, per_class, seed, variant)
        for label in classes:
            moments, images, unreadable = RunningMoments(len(CHANNELS)), 0, 0
            for path in sample.loc[sample["label"] == label, "path"]:
                try:
                    with Image.open(path) as image:
                        if max_side:
                            image.draft("RGB", (max_side, max_side))
                        rgb = to_rgb(image, path)
                except (OSError, ValueError):
                    unreadable += 1
                    continue
                if max_side and max(rgb.shape[:2]) > max_side:
                    small = Image.fromarray(rgb)
                    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                    rgb = np.asarray(small)
                pixels = np.concatenate([rgb.astype(np.float64), to_hsv(rgb)], axis=2)
                moments.add(pixels.reshape(-1, len(CHANNELS)))
                images += 1
            row: dict[str, Any] = {
                "variant": variant,
                "label": label,
                "images": images,
                "unreadable": unreadable,
                "pixels": moments.n,
            }
            for channel, mean, sd in zip(CHANNELS, moments.mean, moments.sd, strict=True):
                row[f"{channel} mean"] = mean if moments.n else np.nan
                row[f"{channel} sd"] = sd
            rows.append(row)
    columns = ["variant", "label", "images", "unreadable", "pixels"]
    columns += [f"{c} {s}" for c in CHANNELS for s in ("mean", "sd")]
    return pd.DataFrame(rows, columns=columns)


def colour_figure(stats: pd.DataFrame) -> Figure:
    """Per channel, mean ± sd of each class; one marker colour per variant."""
    stats = stats[stats["pixels"] > 0]
    if stats.empty:
        return _message("no readable images in the colour sample")
    labels = list(dict.fromkeys(stats["label"]))
    variants = list(dict.fromkeys(stats["variant"]))
    figure = Figure(figsize=(max(7.0, 0.45 * len(labels) * 3), 5.0))
    axes = figure.subplots(2, 3, squeeze=False).ravel()
    x = np.arange(len(labels))
    offset = 0.6 / max(len(variants), 1)
    for axis, channel in zip(axes, CHANNELS, strict=True):
        for n, variant in enumerate(variants):
            rows = stats[stats["variant"] == variant].set_index("label").reindex(labels)
            axis.errorbar(
                x + (n - (len(variants) - 1) / 2) * offset,
                rows[f"{channel} mean"],
                yerr=rows[f"{channel} sd"],
                fmt="o",
                ms=3,
                capsize=2,
                label=variant,
            )
        axis.set_title(channel, fontsize=9)
        axis.set_xticks(x, labels, rotation=90 if len(labels) > 4 else 0, fontsize=7)
    axes[0].legend(fontsize=7)
    figure.suptitle("Mean ± sd over pixels, per class", fontsize=9)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------------------------
# Segmentation QC
# --------------------------------------------------------------------------------------------


def _read_stats(stats_paths: Sequence[str | Path]) -> pd.DataFrame:
    tables = [read_tsv(p).assign(variant=variant_of(p)) for p in stats_paths]
    if not tables:
        columns = ["variant", "id", "label", "foreground_fraction", "flagged", "error"]
        return pd.DataFrame(columns=columns)
    stats = pd.concat(tables, ignore_index=True)
    stats["flagged"] = stats["flagged"].astype(str).str.lower().isin({"true", "1"})
    stats["error"] = stats["error"].astype(str)
    return stats


def segmentation_summary(stats_paths: Sequence[str | Path], classes: Sequence[str]) -> pd.DataFrame:
    """Per variant and class: images, failures, near-empty (flagged) masks and the foreground
    fraction's quartiles."""
    stats = _read_stats(stats_paths)
    rows = []
    for variant in dict.fromkeys(stats["variant"]):
        for label in classes:
            members = stats[(stats["variant"] == variant) & (stats["label"] == label)]
            ok = members.loc[members["error"] == "", "foreground_fraction"].astype(float)
            rows.append(
                {
                    "variant": variant,
                    "label": label,
                    "images": len(members),
                    "failed": int((members["error"] != "").sum()),
                    "flagged": int(members["flagged"].sum()),
                    "flagged %": round(100 * members["flagged"].mean(), 1) if len(members) else 0,
                    "fg q25": ok.quantile(0.25) if len(ok) else np.nan,
                    "fg median": ok.median() if len(ok) else np.nan,
                    "fg q75": ok.quantile(0.75) if len(ok) else np.nan,
                }
            )
    table = pd.DataFrame(rows)
    return table.round(4) if len(table) else table


def foreground_figure(stats_paths: Sequence[str | Path], classes: Sequence[str]) -> Figure:
    """Box plots of the foreground fraction per class, one panel per variant."""
    stats = _read_stats(stats_paths)
    stats = stats[stats["error"] == ""]
    variants = list(dict.fromkeys(stats["variant"]))
    if not variants:
        return _message("no segmentation statistics")
    figure = Figure(figsize=(max(4.0, 0.5 * len(classes) + 1.5), 2.8 * len(variants)))
    axes = figure.subplots(len(variants), 1, squeeze=False)[:, 0]
    for axis, variant in zip(axes, variants, strict=True):
        rows = stats[stats["variant"] == variant]
        data = [
            rows.loc[rows["label"] == c, "foreground_fraction"].astype(float).to_numpy()
            for c in classes
        ]
        axis.boxplot(data, tick_labels=list(classes), showfliers=True, flierprops={"ms": 2})
        axis.set_ylabel("foreground fraction")
        axis.set_title(variant, fontsize=9)
        axis.tick_params(axis="x", labelrotation=90 if len(classes) > 6 else 0, labelsize=8)
    figure.tight_layout()
    return figure


def qc_images(qc_paths: Sequence[str | Path]) -> list[tuple[str, PngImage]]:
    """The segmentation QC grids (original | mask | segmented) with their variant."""
    return [
        (variant_of(p), PngImage.from_file(p, f"segmentation QC grid, {variant_of(p)}"))
        for p in qc_paths
    ]


# --------------------------------------------------------------------------------------------
# Duplicates
# --------------------------------------------------------------------------------------------


def _bools(column: pd.Series) -> pd.Series:
    return column.astype(str).str.lower().isin({"true", "1"})


def duplicate_summary(pairs: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    """Counts of the duplicate audit: exact and near pairs, cross-class pairs, clusters."""
    in_clusters = clusters[clusters["cluster_size"].astype(int) > 1]
    counts = {
        "exact pairs (same bytes)": int((pairs["kind"] == "exact").sum()),
        "near pairs (perceptual hash)": int((pairs["kind"] == "near").sum()),
        "cross-class pairs": int(_bools(pairs["cross_class"]).sum()),
        "images in a duplicate cluster": len(in_clusters),
        "duplicate clusters": in_clusters["cluster"].nunique(),
        "clusters with conflicting labels": in_clusters.loc[
            _bools(in_clusters["conflict"]), "cluster"
        ].nunique(),
        "images dropped when collapsing": int((~_bools(clusters["keep"])).sum()),
    }
    return pd.DataFrame({"count": counts}).rename_axis("duplicates")


def cross_class_pairs(pairs: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Cross-class pairs by the (unordered) pair of labels, most frequent first."""
    cross = pairs[_bools(pairs["cross_class"])]
    order = {label: n for n, label in enumerate(classes)}
    ends = [
        sorted((a, b), key=lambda label: (order.get(label, len(order)), label))
        for a, b in zip(cross["label_a"], cross["label_b"], strict=True)
    ]
    table = pd.DataFrame(ends, columns=["label 1", "label 2"]).assign(kind=list(cross["kind"]))
    return (
        table.groupby(["label 1", "label 2", "kind"])
        .size()
        .rename("pairs")
        .reset_index()
        .sort_values("pairs", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


def distance_figure(pairs: pd.DataFrame) -> Figure:
    """Histogram of the perceptual-hash distance of duplicate pairs (exact pairs sit at 0)."""
    if pairs.empty:
        return _message("no duplicate pairs found")
    distance = pairs["distance"].astype(int)
    bins = np.arange(distance.max() + 2) - 0.5
    kinds = [k for k in ("exact", "near") if (pairs["kind"] == k).any()]
    figure = Figure(figsize=(5, 2.8))
    axis = figure.subplots()
    axis.hist([distance[pairs["kind"] == k] for k in kinds], bins=bins, stacked=True, label=kinds)
    axis.set_xlabel("Hamming distance of perceptual hashes")
    axis.set_ylabel("pairs")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------------------------
# Running the notebook and exporting it
# --------------------------------------------------------------------------------------------


def kernel_spec(ipython_dir: str | Path) -> dict[str, Any]:
    """A kernel spec that runs ipykernel on this interpreter, with leukbench importable and no
    user IPython profile (startup files) in the way."""
    pythonpath = os.pathsep.join(
        p for p in (str(SCRIPTS_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (leukbench)",
        "language": "python",
        "env": {"PYTHONPATH": pythonpath, "IPYTHONDIR": str(ipython_dir)},
    }


def run_notebook(
    notebook: str | Path,
    output: str | Path,
    parameters: Mapping[str, Any],
    *,
    cwd: str | Path | None = None,
    start_timeout: int = 120,
    log_output: bool = False,
) -> None:
    """Execute `notebook` with papermill into `output`, with `parameters` injected.

    The kernel is this interpreter (``sys.executable``), from a kernel spec written to a
    temporary folder, so a ``python3`` kernel registered elsewhere on the machine (a user's
    ``~/.local/share/jupyter``) can never run it; its connection file and sockets live in that
    folder too. Relative paths resolve against `cwd`.
    A failing cell raises ``papermill.PapermillExecutionError``; `output` then holds the
    notebook up to the error.
    """
    import papermill
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    with tempfile.TemporaryDirectory(prefix="leukbench-kernel-") as tmp:
        folder = Path(tmp)
        spec_dir = folder / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps(kernel_spec(folder / "ipython")))

        class KernelManager(AsyncKernelManager):
            """Finds only our kernel spec; connection file and sockets stay in `folder`."""

            def __init__(self, **kwargs: Any) -> None:
                super().__init__(
                    kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder / "kernels")]),
                    connection_file=str(folder / "connection.json"),
                    # Unix sockets in the private folder rather than open localhost ports.
                    transport="ipc" if os.name == "posix" else "tcp",
                    **kwargs,
                )

        # A manager class, not an instance: nbclient then owns the kernel and shuts it down.
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=dict(parameters),
            kernel_name=KERNEL_NAME,
            language="python",
            cwd=None if cwd is None else str(cwd),
            progress_bar=False,
            log_output=log_output,
            start_timeout=start_timeout,
            kernel_manager_class=KernelManager,
        )
    # The executed notebook should open with the ordinary Python kernel, not our temporary one.
    executed = json.loads(Path(output).read_text())
    executed.setdefault("metadata", {})["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    Path(output).write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n")


#: The JupyterLab template without the scripts it would fetch from the web (require.js,
#: MathJax, Mermaid): the page only shows markdown, tables and inlined PNGs, which get the
#: alternative text of their output metadata (:class:`PngImage`).
_OFFLINE_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_png scoped -%}
{%- set alt = output | get_metadata('alt', 'image/png') -%}
{%- if alt -%}{{ super() | replace('<img ', '<img alt="' ~ (alt | escape_html) ~ '" ', 1) }}
{%- else -%}{{ super() }}{%- endif -%}
{%- endblock data_png -%}
"""


def export_html(executed: str | Path, html_path: str | Path, title: str) -> None:
    """Write the executed notebook as one self-contained HTML page titled `title`."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"leukbench_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="leukbench_offline.html.j2",
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    Path(html_path).parent.mkdir(parents=True, exist_ok=True)
    Path(html_path).write_text(body, encoding="utf-8")
