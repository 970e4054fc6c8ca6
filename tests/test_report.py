"""The HTML report: published rows beside ours, every section, images embedded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import yaml

from leukbench.metrics import evaluate
from leukbench.report import SectionInputs, comparison_table, render_page, render_section

CLASSES = ["A", "B"]
COST = [[0, 1], [5, 0]]
PUBLISHED = {"source": "study X", "rows": [{"model": "SVM", "accuracy": 0.9, "f1_macro": 0.8}]}


def _metrics_file(tmp_path: Path, model: str, variant: str) -> str:
    predictions = pd.DataFrame(
        {
            "split": ["train"] * 4 + ["test"] * 4,
            "true": ["A", "A", "B", "B"] * 2,
            "pred": ["A", "A", "B", "B", "A", "B", "B", "B"],
        }
    )
    metrics = {
        "dataset": "toy",
        "variant": variant,
        "model": model,
        "classes": CLASSES,
        "splits": evaluate(predictions, CLASSES, COST),
        "train_seconds": 1.5,
        "unpredicted": [],
    }
    path = tmp_path / f"{variant}_{model}.json"
    path.write_text(json.dumps(metrics))
    return str(path)


def _tsv(tmp_path: Path, name: str, table: pd.DataFrame) -> str:
    path = tmp_path / name
    table.to_csv(path, sep="\t", index=False)
    return str(path)


def test_published_rows_sit_beside_ours_under_the_true_metric_names() -> None:
    ours = {
        "variant": "V",
        "model": "svm",
        "train_seconds": 2.0,
        "splits": {"train": {"accuracy": 1.0}, "test": {"accuracy": 0.75, "n": 4, "f1_macro": 0.7}},
    }
    table = comparison_table([ours], PUBLISHED)
    assert list(table["source"]) == ["leukbench", "published"]
    published = table[table["source"] == "published"].iloc[0]
    assert published["f1_macro"] == 0.8 and pd.isna(published["f1_weighted"])
    assert table.iloc[0]["train_accuracy"] == 1.0 and table.iloc[0]["accuracy"] == 0.75


def test_report_renders_every_section_with_embedded_images(tmp_path: Path) -> None:
    figure, axis = plt.subplots()
    axis.plot([0, 1])
    qc = tmp_path / "V" / "segmentation" / "qc.png"
    qc.parent.mkdir(parents=True)
    figure.savefig(qc)
    stats = pd.DataFrame(
        {
            "id": ["A/1", "B/1"],
            "label": ["A", "B"],
            "foreground_fraction": [0.2, 0.0],
            "flagged": [False, True],
            "error": ["", ""],
        }
    )
    config = {
        "duplicates": {"variant": "V", "max_distance": 10, "collapse": True},
        "split": {
            "seed": 1,
            "ratios": {"train": 0.64, "val": 0.2, "test": 0.16},
            "n_per_class": None,
            "n_total": None,
        },
        "segmentation": {
            "hue": [0.7, 0.8],
            "saturation_min": 0.5,
            "value_min": 0.4,
            "opening_radius": 1,
            "min_object_px": 30,
            "max_hole_px": 64,
            "min_foreground": 0.005,
        },
    }
    task = {
        "name": "toy_task",
        "title": "Toy data",
        "classes": CLASSES,
        "labels": {c: [c] for c in CLASSES},
        "cost_matrix": COST,
        "cost_matrix_set": True,
        "published": PUBLISHED,
        "split": {**config["split"], "protocol": "auto", "labels": {c: [c] for c in CLASSES}},
        "dataset": {
            "name": "toy",
            "classes": CLASSES,
            "variants": ["V"],
            "notes": "No patient ids.",
        },
        "duplicates": config["duplicates"],
        "segmentation": config["segmentation"],
        "evaluation": {
            "bootstrap_resamples": 2000,
            "ci_level": 0.95,
            "alpha": 0.05,
            "ece_bins": 15,
            "temperature_scaling": True,
            "repeat_seeds": [1, 2],
            "seed": 123,
        },
    }
    inputs = SectionInputs(
        task=task,
        metrics=[_metrics_file(tmp_path, "svm", "V"), _metrics_file(tmp_path, "xgboost", "V")],
        manifest=_tsv(
            tmp_path,
            "manifest.tsv",
            pd.DataFrame({"id": ["A/1", "B/1"], "variant": "V", "label": ["A", "B"]}),
        ),
        rejected=_tsv(
            tmp_path,
            "rejected.tsv",
            pd.DataFrame(
                {"variant": ["V"], "path": ["/d/V/A/bad.jpg"], "reason": ["zero-byte file"]}
            ),
        ),
        pairs=_tsv(
            tmp_path,
            "pairs.tsv",
            pd.DataFrame(
                {
                    "id_a": ["A/1"],
                    "id_b": ["A/2"],
                    "label_a": "A",
                    "label_b": "A",
                    "kind": ["near"],
                    "distance": [2],
                    "cross_class": [False],
                }
            ),
        ),
        clusters=_tsv(
            tmp_path,
            "clusters.tsv",
            pd.DataFrame(
                {
                    "id": ["A/1", "A/2"],
                    "label": "A",
                    "cluster": "A/1",
                    "cluster_size": 2,
                    "keep": [True, False],
                    "conflict": False,
                }
            ),
        ),
        splits=_tsv(
            tmp_path,
            "splits.tsv",
            pd.DataFrame(
                {
                    "id": ["A/1", "B/1"],
                    "label": ["A", "B"],
                    "group": "",
                    "split": ["train", "test"],
                    "protocol": "image",
                }
            ),
        ),
        excluded=_tsv(
            tmp_path,
            "excluded.tsv",
            pd.DataFrame({"id": ["A/2"], "label": ["A"], "reason": ["duplicate of A/1"]}),
        ),
        segmentation=[_tsv(tmp_path / "V" / "segmentation", "stats.tsv", stats)],
        qc=[str(qc)],
    )
    html = render_page("Toy run", [render_section(inputs)], config)
    for text in (
        'id="task-toy_task"',
        'class="protocol">image-level<',
        "Toy data",
        "Image-level split",
        "No patient ids.",
        "study X",
        "Rejected files: 1",
        "bad.jpg",
        "zero-byte file",
        "1 near-duplicate pairs",
        "1 images removed",
        "1 flagged",
        "duplicate of A/1",
        "F1 (macro)",
        "cost-sens. acc (normalised)",
        "The thresholds do not fit this variant",
    ):
        assert text in html, text
    assert html.count('class="published"') == 1
    images = re.findall(r'<img src="([^"]+)"', html)
    # Two models x (confusion + cost-weighted confusion) and one QC grid.
    assert len(images) == 5 and all(i.startswith("data:image/png;base64,") for i in images)
    embedded_config = html.split("<pre>")[1].split("</pre>")[0]
    assert yaml.safe_load(embedded_config.replace("&#39;", "'"))["duplicates"]["max_distance"] == 10
