"""leukbench.eda and the EDA notebook (workflow/notebooks/eda.ipynb) on a small synthetic dataset.

The synthetic dataset has two variants, three classes of unequal size, images of several sizes
and modes, one rejected file, duplicate pairs (one cross-class) and segmentation stats with a
flagged mask, written in the workflow's own TSV formats. The last tests run the real notebook
through papermill, as the `eda` rule does, and read the exported HTML.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from conftest import save_image, smear_rgb, smooth_rgb
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_notebook
from PIL import Image

from leukbench import eda
from leukbench.duplicates import CLUSTER_COLUMNS, PAIR_COLUMNS
from leukbench.ingest import MANIFEST_COLUMNS, REJECTED_COLUMNS
from leukbench.smk import write_tsv

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "workflow" / "notebooks" / "eda.ipynb"
CLASSES = ["Blast", "Mono", "Neut"]
COUNTS = {"Blast": 5, "Mono": 3, "Neut": 2}
VARIANTS = ["Original", "Segmented"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(label: str, n: int) -> tuple[Image.Image, str]:
    """A few sizes and modes: most are 40x40 RGB PNGs, one grayscale, one 48x32 JPEG."""
    rgb = smooth_rgb(seed=100 * CLASSES.index(label) + n, size=40)
    if label == "Mono" and n == 0:
        return Image.fromarray(rgb).convert("L"), ".png"
    if label == "Blast" and n == 4:
        return Image.fromarray(smear_rgb(size=48)).resize((48, 32)), ".jpg"
    return Image.fromarray(rgb), ".png"


def build_dataset(root: Path) -> dict[str, object]:
    """Images and every table the notebook reads; returns the notebook's parameters."""
    rows = []
    for variant in VARIANTS:
        for label in CLASSES:
            for n in range(COUNTS[label]):
                image, ext = _image(label, n)
                path = save_image(image, root / "data" / variant / label / f"{label}-{n}{ext}")
                rows.append(
                    {
                        "id": f"{label}/{label}-{n}",
                        "variant": variant,
                        "path": str(path),
                        "label": label,
                        "sha256": f"{label}{n}",
                        "width": image.width,
                        "height": image.height,
                        "mode": image.mode,
                        "group": "",
                    }
                )
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    results = root / "results" / "synthetic"
    write_tsv(manifest, results / "manifest.tsv")
    rejected = pd.DataFrame(
        [
            ["Original", "data/Original/Blast/notes.txt", "not an image file (extension '.txt')"],
            [
                "Original",
                "data/Original/Mono/bad.png",
                "corrupt or truncated image (broken data stream: at byte 10)",
            ],
        ],
        columns=REJECTED_COLUMNS,
    )
    write_tsv(rejected, results / "rejected.tsv")
    pairs = pd.DataFrame(
        [
            ["Blast/Blast-0", "Blast/Blast-1", "Blast", "Blast", "exact", 0, False],
            ["Blast/Blast-2", "Blast/Blast-3", "Blast", "Blast", "near", 3, False],
            ["Mono/Mono-1", "Neut/Neut-0", "Mono", "Neut", "near", 5, True],
        ],
        columns=PAIR_COLUMNS,
    )
    write_tsv(pairs, results / "duplicates" / "pairs.tsv")
    # Three clusters of two: exact Blast pair, near Blast pair, and a Mono/Neut label conflict
    # whose representative is Mono (the first label of the tied majority, as cluster_duplicates).
    cluster_of = {"Blast/Blast-1": "Blast/Blast-0", "Blast/Blast-3": "Blast/Blast-2"}
    cluster_of["Neut/Neut-0"] = "Mono/Mono-1"
    members = set(cluster_of) | set(cluster_of.values())
    clusters = [
        [
            i,
            label,
            cluster_of.get(i, i),
            2 if i in members else 1,
            i not in cluster_of,
            cluster_of.get(i, i) == "Mono/Mono-1",
        ]
        for i, label in manifest.loc[manifest["variant"] == "Original", ["id", "label"]].values
    ]
    write_tsv(
        pd.DataFrame(clusters, columns=CLUSTER_COLUMNS), results / "duplicates" / "clusters.tsv"
    )
    stats_paths, qc_paths = [], []
    for variant in VARIANTS:
        images = manifest[manifest["variant"] == variant]
        fraction = np.linspace(0.05, 0.6, len(images))
        stats = pd.DataFrame(
            {
                "id": images["id"],
                "label": images["label"],
                "foreground_fraction": fraction,
                "flagged": fraction < 0.12,  # the first two: 0.05, 0.11
                "error": ["" if i else "unreadable mask" for i in range(len(images))],
            }
        )
        folder = results / variant / "segmentation"
        write_tsv(stats, folder / "stats.tsv")
        save_image(smear_rgb(size=60), folder / "qc.png")
        stats_paths.append(str(folder / "stats.tsv"))
        qc_paths.append(str(folder / "qc.png"))
    return {
        "dataset": "synthetic",
        "title": "Synthetic smears",
        "manifest": str(results / "manifest.tsv"),
        "rejected": str(results / "rejected.tsv"),
        "pairs": str(results / "duplicates" / "pairs.tsv"),
        "clusters": str(results / "duplicates" / "clusters.tsv"),
        "segmentation_stats": stats_paths,
        "qc_images": qc_paths,
        "classes": CLASSES,
        "sample_per_class": 2,
        "colour_per_class": 3,
        "seed": 7,
        "figures_dir": str(results / "eda" / "figures"),
    }


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, object]:
    return build_dataset(tmp_path)


@pytest.fixture
def manifest(dataset: dict[str, object]) -> pd.DataFrame:
    return eda.read_table(str(dataset["manifest"]))


# --------------------------------------------------------------------------------------------
# Tables and figures
# --------------------------------------------------------------------------------------------


def test_overview_counts_images_and_rejections(dataset, manifest) -> None:
    table = eda.overview(manifest, eda.read_table(str(dataset["rejected"])))
    assert table.loc["Original"].to_dict() == {
        "images": 10,
        "classes": 3,
        "groups": 0,
        "rejected": 2,
    }
    assert table.loc["Segmented", "rejected"] == 0


def test_class_balance_in_config_order_with_totals(manifest) -> None:
    balance = eda.class_balance(manifest, [*CLASSES, "Empty"])
    assert list(balance.columns) == [*CLASSES, "Empty", "total", "imbalance"]
    assert balance.loc["Original", CLASSES].tolist() == [5, 3, 2]
    assert balance.loc["Segmented", "total"] == 10
    assert np.isnan(balance.loc["Original", "imbalance"])  # a class with no images
    assert eda.class_balance(manifest, CLASSES).loc["Original", "imbalance"] == 2.5
    figure = eda.class_balance_figure(balance)
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].patches) == 2 * 4  # one bar per variant and class


def test_rejected_reasons_count_like_reasons_together(dataset) -> None:
    table = eda.rejected_reasons(eda.read_table(str(dataset["rejected"])))
    assert table.values.tolist() == [
        ["Original", "not an image file", 1, "data/Original/Blast/notes.txt"],
        ["Original", "corrupt or truncated image", 1, "data/Original/Mono/bad.png"],
    ]
    assert eda.rejected_reasons(pd.DataFrame(columns=REJECTED_COLUMNS)).empty
    assert eda.reason_kind("duplicate id 'A/x': a.png has the same id") == "duplicate id '…'"
    assert (
        eda.reason_kind("path 'a/b.png' does not match group_regex '^(?P<group>.+)/'")
        == "path '…' does not match group_regex '…'"
    )


def test_sample_ids_are_seeded_and_independent_of_row_order(manifest) -> None:
    first = eda.sample_ids(manifest, CLASSES, 2, seed=7, variant="Original")
    assert first.groupby("label").size().to_dict() == {"Blast": 2, "Mono": 2, "Neut": 2}
    assert list(dict.fromkeys(first["label"])) == CLASSES
    shuffled = manifest.sample(frac=1, random_state=3)
    again = eda.sample_ids(shuffled, CLASSES, 2, seed=7, variant="Original")
    assert again["id"].tolist() == first["id"].tolist()
    # The same ids in every variant, and one class's sample does not depend on the others.
    other = eda.sample_ids(manifest, CLASSES, 2, seed=7, variant="Segmented")
    assert other["id"].tolist() == first["id"].tolist()
    without_blast = eda.sample_ids(
        manifest[manifest["label"] != "Blast"], CLASSES, 2, 7, "Original"
    )
    assert without_blast["id"].tolist() == first.loc[first["label"] != "Blast", "id"].tolist()
    seeds = {tuple(eda.sample_ids(manifest, CLASSES, 2, s, "Original")["id"]) for s in range(8)}
    assert len(seeds) > 1
    assert len(eda.sample_ids(manifest, CLASSES, 10, 7, "Original")) == 10  # all there is


def test_load_thumbnail_fits_the_box_in_rgb(tmp_path: Path) -> None:
    wide = save_image(smooth_rgb(seed=1, size=64), tmp_path / "a.png")
    gray = save_image(Image.fromarray(smooth_rgb(seed=2, size=50)).convert("L"), tmp_path / "g.png")
    sixteen = save_image(
        Image.fromarray((np.arange(30 * 20).reshape(30, 20) * 100).astype(np.uint16)),
        tmp_path / "s.png",
    )
    for path in (wide, gray, sixteen):
        thumb = eda.load_thumbnail(path, 24)
        assert thumb.dtype == np.uint8 and thumb.ndim == 3 and thumb.shape[2] == 3
        assert max(thumb.shape[:2]) <= 24
    assert eda.load_thumbnail(wide, 24).shape == (24, 24, 3)


def test_sample_grid_has_a_row_per_class_and_survives_missing_files(manifest) -> None:
    sampled = eda.sample_ids(manifest, CLASSES, 3, seed=7, variant="Original")
    broken = manifest.copy()
    broken.loc[broken["path"] == sampled["path"].iloc[0], "path"] = "/nonexistent/image.png"
    figure = eda.sample_grid(broken, CLASSES, 3, seed=7, variant="Original", thumb_px=16)
    assert len(figure.axes) == len(CLASSES) * 3
    assert sum(bool(axis.images) for axis in figure.axes) == 3 + 3 + 2 - 1
    texts = [t.get_text() for axis in figure.axes for t in axis.texts]
    assert texts == ["unreadable"]
    assert len(eda.sample_grid(manifest, CLASSES, 3, seed=7, variant="Nope").axes) == 1


def test_sizes_and_modes(manifest) -> None:
    table = eda.size_mode_table(manifest)
    original = table[table["variant"] == "Original"]
    assert original.iloc[0][["width", "height", "mode", "images"]].tolist() == [40, 40, "RGB", 8]
    assert original["images"].sum() == 10
    assert original["share"].sum() == pytest.approx(1.0)
    capped = eda.size_mode_table(manifest, top=1)
    assert capped[capped["variant"] == "Original"]["width"].tolist() == [40, "other"]
    summary = eda.size_summary(manifest)
    assert summary.loc["Original", "width max"] == 48
    assert summary.loc["Original", "height min"] == 32
    assert summary.loc["Original", "modes"] == "L, RGB"


def test_running_moments_match_numpy_on_uneven_blocks() -> None:
    rng = np.random.default_rng(0)
    blocks = [rng.normal(100, 30, size=(n, 6)) for n in (1, 17, 400, 3)]
    moments = eda.RunningMoments(6)
    for block in blocks:
        moments.add(block)
    moments.add(np.empty((0, 6)))
    everything = np.concatenate(blocks)
    assert moments.n == len(everything)
    np.testing.assert_allclose(moments.mean, everything.mean(axis=0))
    np.testing.assert_allclose(moments.sd, everything.std(axis=0))
    assert np.isnan(eda.RunningMoments(3).sd).all()


def test_colour_statistics_of_solid_images(tmp_path: Path) -> None:
    red = save_image(np.full((10, 10, 3), (255, 0, 0), np.uint8), tmp_path / "red.png")
    blue = save_image(np.full((10, 10, 3), (0, 0, 255), np.uint8), tmp_path / "blue.png")
    grey = save_image(np.full((20, 5, 3), 128, np.uint8), tmp_path / "grey.png")
    manifest = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "variant": "Original",
            "path": [str(red), str(blue), str(grey), str(tmp_path / "missing.png")],
            "label": ["X", "X", "Y", "Y"],
        }
    )
    stats = eda.colour_statistics(manifest, ["X", "Y"], per_class=5, seed=0).set_index("label")
    x, y = stats.loc["X"], stats.loc["Y"]
    assert (x["images"], x["pixels"], y["images"], y["unreadable"]) == (2, 200, 1, 1)
    assert x["R mean"] == pytest.approx(127.5) and x["R sd"] == pytest.approx(127.5)
    assert x["G mean"] == 0 and x["G sd"] == 0
    assert x["S mean"] == pytest.approx(1.0) and x["V mean"] == pytest.approx(1.0)
    assert y["R mean"] == 128 and y["S mean"] == 0 and y["V sd"] == 0
    limited = eda.colour_statistics(manifest, ["X", "Y"], per_class=1, seed=0)
    assert limited["images"].tolist() in ([1, 1], [1, 0])
    assert isinstance(eda.colour_figure(stats.reset_index()), Figure)


def test_segmentation_summary_and_figures(dataset) -> None:
    paths = dataset["segmentation_stats"]
    table = eda.segmentation_summary(paths, CLASSES)
    assert table[["variant", "label"]].values.tolist() == [
        [v, c] for v in VARIANTS for c in CLASSES
    ]
    original = table[table["variant"] == "Original"].set_index("label")
    assert original["images"].tolist() == [5, 3, 2]
    assert original.loc["Blast", "failed"] == 1  # the first image of each variant
    assert original.loc["Blast", "flagged"] == 2 and original["flagged"].sum() == 2
    assert original.loc["Neut", "fg median"] == pytest.approx(
        np.linspace(0.05, 0.6, 10)[8:].mean(), abs=1e-4
    )
    figure = eda.foreground_figure(paths, CLASSES)
    assert len(figure.axes) == len(VARIANTS)
    grids = eda.qc_images(dataset["qc_images"])
    assert [variant for variant, _ in grids] == VARIANTS
    assert grids[0][1].data.startswith(PNG_MAGIC)
    assert grids[0][1]._repr_png_()[1] == {"alt": "segmentation QC grid, Original"}
    assert len(eda.foreground_figure([], CLASSES).axes) == 1


def test_duplicate_tables_and_histogram(dataset) -> None:
    pairs = eda.read_table(str(dataset["pairs"]))
    summary = eda.duplicate_summary(pairs, eda.read_table(str(dataset["clusters"])))["count"]
    assert summary["exact pairs (same bytes)"] == 1
    assert summary["near pairs (perceptual hash)"] == 2
    assert summary["cross-class pairs"] == 1
    assert summary["duplicate clusters"] == 3
    assert summary["images in a duplicate cluster"] == 6
    assert summary["clusters with conflicting labels"] == 1
    assert summary["images dropped when collapsing"] == 3
    cross = eda.cross_class_pairs(pairs, CLASSES)
    assert cross.values.tolist() == [["Mono", "Neut", "near", 1]]
    figure = eda.distance_figure(pairs)
    assert sum(patch.get_height() for patch in figure.axes[0].patches) == 3
    assert len(eda.distance_figure(pairs.head(0)).axes) == 1


def test_show_saves_the_png_it_returns(tmp_path: Path) -> None:
    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    image = eda.show(figure, tmp_path / "figs", "line")
    assert (tmp_path / "figs" / "line.png").read_bytes() == image.data
    assert image.data.startswith(PNG_MAGIC)
    assert image._repr_png_() == (image.data, {"alt": "line"})  # alt text in the metadata
    assert eda.PngImage(b"x")._repr_png_() == b"x"
    assert repr(image).startswith("<PNG image,")  # never the bytes in text/plain
    header = eda.heading("A & B", "two <classes>")
    assert "A &amp; B" in header._repr_html_() and "two &lt;classes&gt;" in header._repr_html_()
    assert repr(header).startswith("A & B")


# --------------------------------------------------------------------------------------------
# Running notebooks
# --------------------------------------------------------------------------------------------


def test_run_notebook_uses_this_interpreter_not_a_registered_kernel(tmp_path, monkeypatch) -> None:
    # A python3 kernel registered on the machine that would run the wrong interpreter.
    bogus = tmp_path / "jupyter" / "kernels" / "python3"
    bogus.mkdir(parents=True)
    (bogus / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    "/nonexistent/python",
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "wrong",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    notebook = new_notebook(
        cells=[
            new_code_cell("value = 1", metadata={"tags": ["parameters"]}),
            new_code_cell(
                "import os, sys\nimport leukbench\n"
                "print(sys.executable)\nprint(os.getcwd())\nprint(value * 2)"
            ),
            new_code_cell("raise RuntimeError('stop here')"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    source, executed = tmp_path / "probe.ipynb", tmp_path / "out" / "probe.ipynb"
    executed.parent.mkdir()
    nbformat.write(notebook, source)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(papermill.PapermillExecutionError, match="stop here"):
        eda.run_notebook(source, executed, {"value": 21}, cwd=workdir)
    result = json.loads(executed.read_text())
    probe = next(c for c in result["cells"] if "print(sys.executable)" in "".join(c["source"]))
    printed = "".join(probe["outputs"][0]["text"]).split("\n")
    assert Path(printed[0]).resolve() == Path(sys.executable).resolve()
    assert Path(printed[1]).resolve() == workdir.resolve()
    assert printed[2] == "42"


def test_notebook_runs_on_a_synthetic_dataset_and_exports_html(tmp_path, dataset) -> None:
    out = tmp_path / "results" / "synthetic" / "eda"
    executed, page = out / "eda.ipynb", out / "eda.html"
    out.mkdir(parents=True, exist_ok=True)
    eda.run_notebook(NOTEBOOK, executed, dataset, cwd=tmp_path)
    eda.export_html(executed, page, "EDA: Synthetic smears")

    notebook = json.loads(executed.read_text())
    outputs = [o for c in notebook["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr"], "the notebook wrote to stderr"
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    tags = [c["metadata"].get("tags", []) for c in notebook["cells"]]
    assert ["injected-parameters"] in tags

    text = page.read_text()
    for section in eda.SECTIONS:
        assert re.search(rf"<h2[^>]*>{re.escape(section)}<", text), section
    assert text.count("data:image/png;base64,") >= 8  # balance, 2 grids, colour, fg, 2 QC, dups
    assert "<title>EDA: Synthetic smears</title>" in text
    assert "Synthetic smears" in text and "Traceback" not in text
    assert "<script src=" not in text  # self-contained: nothing fetched from the web
    assert 'alt="Bar chart of images per class and variant"' in text
    assert "No description has been provided" not in text  # every image has its alt text
    figures = sorted(p.name for p in Path(str(dataset["figures_dir"])).iterdir())
    assert figures == [
        "class_balance.png",
        "colour_statistics.png",
        "duplicate_distances.png",
        "foreground.png",
        "samples_Original.png",
        "samples_Segmented.png",
    ]
