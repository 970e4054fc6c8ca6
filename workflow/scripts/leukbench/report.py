"""Self-contained HTML reports: one section per task (comparison, confusion matrices, data and
protocol), stitched into a page per task and one page per run."""

from __future__ import annotations

import base64
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from leukbench import __version__
from leukbench.report_analysis import (
    CI_METRICS,
    cost_confusion_figure,
    matrix_figure,
    model_key,
    repeats_summary,
    significance,
    with_ci,
)
from leukbench.smk import read_json, read_tsv

COLUMNS = {
    "train_accuracy": "train acc",
    "accuracy": "test acc",
    "total_cost": "total cost",
    "average_cost": "avg cost",
    "cost_sensitive_accuracy": "cost-sens. acc (published formula)",
    "cost_sensitive_accuracy_normalised": "cost-sens. acc (normalised)",
    "f1_weighted": "F1 (support-weighted)",
    "f1_macro": "F1 (macro)",
}


@dataclass(frozen=True)
class SectionInputs:
    """A task's outputs, and `task`: the task's settings (see task_report_params in common.smk)."""

    task: dict[str, Any]
    metrics: list[str]
    manifest: str
    rejected: str
    pairs: str
    clusters: str
    splits: str
    excluded: str
    segmentation: list[str]
    qc: list[str]
    histories: list[str] = field(default_factory=list)
    evaluations: list[str] = field(default_factory=list)
    comparisons: str | None = None
    repeats: list[str] = field(default_factory=list)
    optimism: str | None = None
    cross_split: str | None = None
    cards: list[str] = field(default_factory=list)
    gradcams: list[str] = field(default_factory=list)
    importances: list[str] = field(default_factory=list)


def png_data_uri(source: plt.Figure | str | Path) -> str:
    if isinstance(source, str | Path):
        data = Path(source).read_bytes()
    else:
        buffer = io.BytesIO()
        source.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(source)
        data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def comparison_table(metrics: list[dict], published: dict | None) -> pd.DataFrame:
    """Our models (one row per variant and model) and the published rows, marked as such."""
    rows = []
    for m in metrics:
        test = m["splits"].get("test", {})
        rows.append(
            {
                "source": "leukbench",
                "variant": m["variant"],
                "model": m["model"],
                "train_accuracy": m["splits"].get("train", {}).get("accuracy"),
                **{key: test.get(key) for key in COLUMNS if key != "train_accuracy"},
                "n_test": test.get("n"),
                "train_seconds": m.get("train_seconds"),
            }
        )
    for row in (published or {}).get("rows", []):
        rows.append({"source": "published", "variant": "", **row})
    return pd.DataFrame(
        rows, columns=["source", "variant", "model", *COLUMNS, "n_test", "train_seconds"]
    )


def confusion_figure(m: dict, classes: list[str]) -> plt.Figure:
    matrix = np.asarray(m["splits"]["test"]["confusion_matrix"])
    return matrix_figure(matrix, classes, "Blues", f"{m['model']} on {m['variant']} (test)")


def curves_figure(history_path: str) -> plt.Figure:
    """Per-epoch loss and accuracy, train and validation, of one deep model."""
    history = read_tsv(history_path)
    model, variant = Path(history_path).parent.name, Path(history_path).parent.parent.name
    figure, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for column, style in ((metric, "-"), (f"val_{metric}", "--")):
            if column in history:
                axis.plot(history["epoch"], history[column], style, label=column)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=7)
    figure.suptitle(f"{model} on {variant}", fontsize=9)
    figure.tight_layout()
    return figure


def _html_table(table: pd.DataFrame, **kwargs: Any) -> str:
    return table.to_html(index=False, border=0, classes="table", na_rep="", **kwargs)


def _format(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if column in ("total_cost", "n_test"):
        return f"{value:.0f}"
    if column == "train_seconds":
        return f"{value:.1f}"
    return f"{value:.4f}"


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("leukbench", "templates"), autoescape=select_autoescape(["html", "j2"])
    )


def render_page(
    title: str,
    sections: list[str],
    config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> str:
    """One HTML page holding the given task sections, the configuration and the provenance."""
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            provenance=provenance,
            version=__version__,
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            sections=sections,
            config_yaml=yaml.safe_dump(config, sort_keys=False) if config else None,
        )
    )


def render_section(inputs: SectionInputs) -> str:
    """The HTML section of one task; self-contained (figures are inlined)."""
    task = inputs.task
    dataset = task["dataset"]
    classes = task["classes"]
    metrics = [read_json(p) for p in inputs.metrics]
    manifest, rejected = read_tsv(inputs.manifest), read_tsv(inputs.rejected)
    pairs, clusters = read_tsv(inputs.pairs), read_tsv(inputs.clusters)
    splits, excluded = read_tsv(inputs.splits), read_tsv(inputs.excluded)

    comparison = comparison_table(metrics, task.get("published"))
    shown = comparison.copy()
    for column in [*COLUMNS, "n_test", "train_seconds"]:
        shown[column] = [_format(v, column) for v in shown[column]]
    names = [f"{m['variant']}/{m['model']}" for m in metrics]
    by_name = dict(zip(names, metrics, strict=True))
    for row, name in enumerate(names):  # our rows come first, in metrics order
        cis = {c["metric"]: c for c in by_name[name].get("ci", [])}
        for column in CI_METRICS:
            if column in cis:
                digits = 0 if column == "total_cost" else 4
                ci = cis[column]
                shown.loc[row, column] = with_ci(ci["value"], ci["ci_low"], ci["ci_high"], digits)
    comparisons = read_tsv(inputs.comparisons) if inputs.comparisons else None
    accuracy = {n: by_name[n]["splits"]["test"]["accuracy"] for n in names}
    marks = significance(comparisons, names, accuracy)
    repeats = repeats_summary(inputs.repeats)
    extra = len(shown) - len(names)  # the published rows follow ours
    shown.insert(
        4,
        "accuracy vs best",
        [marks.get(n, ("", ""))[0] for n in names] + [""] * extra,
    )
    shown.insert(
        7,
        "cost vs best",
        [marks.get(n, ("", ""))[1] for n in names] + [""] * extra,
    )
    shown["ECE"] = [
        f"{by_name[n]['calibration']['ece']:.4f}" if "calibration" in by_name[n] else ""
        for n in names
    ] + [""] * extra
    shown["ECE after T"] = [
        f"{by_name[n]['calibration']['temperature']['ece_after']:.4f}"
        if "temperature" in by_name[n].get("calibration", {})
        else ""
        for n in names
    ] + [""] * extra
    shown["test acc, re-splits"] = [repeats.get(n, {}).get("accuracy", "") for n in names] + [
        ""
    ] * extra
    shown = shown.rename(columns={**COLUMNS, "n_test": "test n", "train_seconds": "fit s"})
    row_classes = ["published" if s == "published" else "" for s in comparison["source"]]

    counts = pd.crosstab(manifest["variant"], manifest["label"]).reindex(
        columns=dataset["classes"], fill_value=0
    )
    counts["total"] = counts.sum(axis=1)
    split_counts = pd.crosstab(splits["label"], splits["split"]).reindex(
        index=classes, columns=["train", "val", "test"], fill_value=0
    )
    split_counts.loc["total"] = split_counts.sum()

    segmentation = []
    for stats_path, qc_path in zip(inputs.segmentation, inputs.qc, strict=True):
        stats = read_tsv(stats_path)
        variant = Path(stats_path).parent.parent.name
        flagged = stats[stats["flagged"].astype(bool)]
        segmentation.append(
            {
                "variant": variant,
                "n": len(stats),
                "flagged": flagged,
                "failed": stats[stats["error"] != ""],
                "median": float(stats["foreground_fraction"].median()),
                "by_class": stats.groupby("label")["flagged"]
                .agg(["sum", "count"])
                .reindex(dataset["classes"]),
                "grid": png_data_uri(qc_path),
            }
        )

    per_class = {
        f"{m['model']} / {m['variant']}": pd.DataFrame(m["splits"]["test"]["per_class"]).T.round(4)
        for m in metrics
    }
    in_clusters = clusters[clusters["cluster_size"] > 1]
    dups = {
        "exact": int((pairs["kind"] == "exact").sum()),
        "near": int((pairs["kind"] == "near").sum()),
        "cross_class": int(pairs["cross_class"].astype(bool).sum()),
        "in_clusters": len(in_clusters),
        "clusters": in_clusters["cluster"].nunique(),
        "removed": int((~clusters["keep"].astype(bool)).sum()),
    }
    protocol = splits["protocol"].iloc[0] if len(splits) else "image"
    panels = model_panels(inputs, metrics, names, classes, task["cost_matrix"])
    leakage = {
        "optimism": read_tsv(inputs.optimism) if inputs.optimism else None,
        "cross_split": read_tsv(inputs.cross_split) if inputs.cross_split else None,
    }
    return (
        _environment()
        .get_template("report_section.html.j2")
        .render(
            panels=panels,
            leakage=leakage,
            comparisons=comparisons,
            title=task.get("title") or task["name"],
            task=task,
            dataset=dataset,
            comparison=shown,
            row_classes=row_classes,
            published=task.get("published"),
            curves=[png_data_uri(curves_figure(h)) for h in inputs.histories],
            per_class=per_class,
            counts=counts,
            rejected=rejected,
            pairs=pairs,
            dups=dups,
            segmentation=segmentation,
            split_counts=split_counts,
            excluded=excluded,
            excluded_reasons=_reason_counts(excluded),
            protocol=protocol,
            collapse=task["duplicates"]["collapse"],
            duplicates_config=task["duplicates"],
            split_config=task["split"],
            seg=task["segmentation"],
            unpredicted=[(m["model"], m["variant"], u) for m in metrics for u in m["unpredicted"]],
            html_table=_html_table,
        )
    )


def _reason_counts(excluded: pd.DataFrame) -> pd.DataFrame:
    """Excluded images per reason kind (duplicate reasons name their cluster, so cut at 'of')."""
    kinds = excluded["reason"].str.replace(r" of .*$", "", regex=True)
    return kinds.value_counts().rename_axis("reason").reset_index(name="images")


def model_panels(
    inputs: SectionInputs,
    metrics: list[dict],
    names: list[str],
    classes: list[str],
    cost: list[list[float]],
) -> list[dict[str, Any]]:
    """Per model: its figures (inlined) and its model card."""
    evaluations = {model_key(p): Path(p) for p in inputs.evaluations}
    cards = {model_key(p): Path(p).read_text() for p in inputs.cards}
    gradcams = {model_key(p): png_data_uri(p) for p in inputs.gradcams}
    importances = {model_key(p): png_data_uri(p) for p in inputs.importances}
    panels = []
    for name, m in zip(names, metrics, strict=True):
        figures = [
            ("confusion matrix", png_data_uri(confusion_figure(m, classes))),
            ("cost-weighted confusion", png_data_uri(cost_confusion_figure(m, classes, cost))),
        ]
        folder = evaluations.get(name)
        if folder is not None:
            for png, label in (
                ("reliability.png", "reliability diagram"),
                ("roc.png", "ROC"),
                ("pr.png", "precision-recall"),
                ("f1_threshold.png", "F1 by threshold"),
            ):
                if (folder / png).is_file():
                    figures.append((label, png_data_uri(folder / png)))
        panels.append(
            {
                "name": name,
                "figures": figures,
                "gradcam": gradcams.get(name),
                "importance": importances.get(name),
                "card": cards.get(name),
                "auc": m.get("auc", {}),
                "calibration": m.get("calibration", {}),
            }
        )
    return panels
