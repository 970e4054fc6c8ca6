"""A Markdown model card for one trained benchmark model (template ``templates/model_card.md.j2``).

Sections: model, data, task and split protocol, metrics with confidence intervals, calibration,
intended use (research benchmarking only, not for diagnosis) and known limitations (the caller's
plus the generic ones of this benchmark, see :func:`generic_limitations`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

__all__ = [
    "FAMILIES",
    "NOT_FOR_DIAGNOSIS",
    "PROTOCOLS",
    "generic_limitations",
    "render_model_card",
]

NOT_FOR_DIAGNOSIS = "Not for diagnosis or clinical decisions."
WARNING = (
    f"> **Research benchmarking only. {NOT_FOR_DIAGNOSIS}** See *Intended use* and *Known "
    "limitations*."
)

FAMILIES = {
    "cnn": "custom CNN (published architecture, trained from scratch)",
    "transfer": "transfer learning (ImageNet backbone + trained classification head)",
    "hybrid": "CNN + U-Net hybrid (ImageNet backbone and a U-Net on the HSV-masked image)",
    "svm": "support vector machine on handcrafted features",
    "xgboost": "gradient-boosted trees (XGBoost) on handcrafted features",
}
# Spec keys shown as the architecture rather than as hyperparameters.
_IDENTITY_KEYS = ("family", "architecture", "backbone", "hybrid_variant")

PROTOCOLS = {
    "image": (
        "image-level",
        "Images were split at random, stratified by class; images of one patient can fall in "
        "train and test, so the test metrics measure within-patient recognition as well.",
    ),
    "group": (
        "patient-disjoint",
        "Every patient (group id) has all its images in a single split, stratified by class.",
    ),
    "proxy-group": (
        "proxy-group",
        "The dataset has no patient ids: images were grouped by a proxy for the patient or "
        "slide, and whole groups assigned to one split. The proxy approximates a "
        "patient-disjoint split but does not guarantee it.",
    ),
}


def _protocol(name: str) -> dict[str, str]:
    key = name.replace("_", "-")
    if key not in PROTOCOLS:
        return {"name": name, "description": "(protocol not described by leukbench)"}
    label, description = PROTOCOLS[key]
    return {"name": label, "description": description}


def generic_limitations(protocol: str, n_test: int | None = None) -> list[str]:
    """Limitations every model of this benchmark shares, given the split `protocol`."""
    items = [
        "Single-centre data: the public datasets come from one laboratory each (one staining "
        "protocol, microscope and camera); performance on other centres is unknown and "
        "likely lower.",
    ]
    key = protocol.replace("_", "-")
    if key == "image":
        items.append(
            "No patient ids: the split is image-level, so images of one patient sit on both "
            "sides of it and the metrics are optimistic."
        )
    elif key == "proxy-group":
        items.append(
            "No patient ids: the proxy groups may split one patient's images, so some "
            "optimism from within-patient similarity can remain."
        )
    size = f" of {n_test} images" if n_test else ""
    items += [
        f"The confidence intervals reflect the sampling of the test split{size} only, not "
        "variation between training runs, seeds or sites.",
        "Class proportions are those of the dataset, not of any clinical population: "
        "predictive values do not transfer.",
        "Labels are the dataset's own; no independent expert review or clinical follow-up was "
        "available.",
    ]
    return items


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return "n/a" if value is None else str(value)


def _number(value: Any, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(number) else f"{number:.{digits}f}"


def _metric_rows(metrics: pd.DataFrame) -> list[dict[str, str]]:
    missing = [c for c in ("metric", "value", "ci_low", "ci_high") if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics lack columns {missing}")
    rows = []
    for row in metrics.itertuples(index=False):
        low, high = _number(row.ci_low), _number(row.ci_high)
        ci = "n/a" if "n/a" in (low, high) else f"[{low}, {high}]"
        rows.append({"metric": str(row.metric), "value": _number(row.value), "ci": ci})
    return rows


def _split_counts(
    splits: pd.DataFrame, classes: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    order = [s for s in ("train", "val", "test") if s in set(splits["split"])]
    order += sorted(set(splits["split"]) - set(order))
    table = pd.crosstab(splits["label"], splits["split"]).reindex(
        index=list(classes), columns=order, fill_value=0
    )
    rows = [
        {"label": label, "counts": [int(v) for v in counts], "total": int(counts.sum())}
        for label, counts in table.iterrows()
    ]
    totals = table.sum()
    rows.append({"label": "total", "counts": [int(v) for v in totals], "total": int(totals.sum())})
    return order, rows


def _architecture(spec: Mapping[str, Any]) -> str:
    family = spec.get("family")
    if family == "cnn":
        return str(spec.get("architecture", "?"))
    if family == "transfer":
        return f"{spec.get('backbone', '?')} backbone + head"
    if family == "hybrid":
        variant = spec.get("hybrid_variant", "pooled")
        return f"{spec.get('backbone', '?')} backbone + U-Net ({variant} U-Net features)"
    if family in ("svm", "xgboost"):
        return f"{family} on the handcrafted feature table"
    return str(spec.get("architecture") or family or "?")


def _calibration(
    calibration: Mapping[str, Any] | None, metrics: pd.DataFrame
) -> list[tuple[str, str]]:
    """Lines of the calibration section; the ECE falls back to an ``ece`` metrics row."""
    values = dict(calibration or {})
    ece_rows = metrics[metrics["metric"].astype(str).str.lower() == "ece"]
    if not {"ece", "ece_before"} & set(values) and len(ece_rows):
        values["ece"] = float(ece_rows["value"].iloc[0])
    if not values:
        return []
    labels = {
        "ece": "Expected calibration error (ECE)",
        "ece_before": "Expected calibration error (ECE)",
        "n_bins": "ECE bins",
        "temperature": "Temperature (fitted on the validation split)",
        "ece_after": "ECE after temperature scaling",
        "nll_before": "Negative log-likelihood",
        "nll_after": "Negative log-likelihood after temperature scaling",
    }
    lines = [(labels.get(k, k), _format_value(v)) for k, v in values.items()]
    if "temperature" not in values:
        lines.append(("Temperature scaling", "not fitted"))
    return lines


def render_model_card(
    model: str,
    spec: Mapping[str, Any],
    *,
    dataset: str,
    variant: str,
    classes: Sequence[str],
    splits: pd.DataFrame,
    metrics: pd.DataFrame,
    protocol: str | None = None,
    calibration: Mapping[str, Any] | None = None,
    limitations: Sequence[str] = (),
    info: Mapping[str, Any] | None = None,
    ci_level: float = 0.95,
    ci_method: str | None = None,
) -> str:
    """The Markdown model card of one trained model.

    `model`: its name in the config; `spec`: its ``models:`` entry (family, architecture or
    backbone, hyperparameters). `splits`: the split table (label, split; a ``protocol`` column,
    as :func:`leukbench.splits.make_splits` writes, gives the protocol unless `protocol` is
    passed: ``image``, ``group`` or ``proxy-group``). `metrics`: columns metric, value, ci_low,
    ci_high (test split). `calibration`: ``ece`` (or ``ece_before``), and optionally ``n_bins``,
    ``temperature``, ``ece_after``, ``nll_before``, ``nll_after`` -- the fields of
    :class:`leukbench.calibration.TemperatureResult`, so ``dataclasses.asdict`` of one fits;
    without an ECE there, an ``ece`` metrics row is used.
    `limitations`: model-specific ones, listed before :func:`generic_limitations`. `info`:
    extra facts listed under *Model* (e.g. parameters, best epoch). `ci_method` says how the
    intervals were computed.
    """
    if protocol is None:
        has_protocol = "protocol" in splits.columns and len(splits)
        protocol = str(splits["protocol"].iloc[0]) if has_protocol else "image"
    family = str(spec.get("family", "?"))
    split_names, counts = _split_counts(splits, classes)
    n_test = int((splits["split"] == "test").sum())
    hyperparameters = [
        (str(k), _format_value(v)) for k, v in spec.items() if k not in _IDENTITY_KEYS
    ]
    environment = Environment(
        loader=PackageLoader("leukbench", "templates"),
        autoescape=False,  # Markdown, not HTML
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["cell"] = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    return environment.get_template("model_card.md.j2").render(
        title=f"{model} ({dataset} / {variant})",
        warning=WARNING,
        family=FAMILIES.get(family, family),
        architecture=_architecture(spec),
        info=[(str(k), _format_value(v)) for k, v in (info or {}).items()],
        hyperparameters=hyperparameters,
        dataset=dataset,
        variant=variant,
        classes=list(classes),
        split_names=split_names,
        counts=counts,
        task=f"blood-smear image classification into {len(classes)} classes",
        protocol=_protocol(protocol),
        metrics=_metric_rows(metrics),
        ci_label=f"{ci_level * 100:g} % CI",
        ci_method=ci_method,
        calibration=_calibration(calibration, metrics),
        not_for_diagnosis=NOT_FOR_DIAGNOSIS,
        limitations=[*limitations, *generic_limitations(protocol, n_test)],
    )
