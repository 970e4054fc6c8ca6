"""Markdown model cards (leukbench.modelcard): sections, numbers, protocol and the
not-for-diagnosis statement."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from leukbench.modelcard import NOT_FOR_DIAGNOSIS, generic_limitations, render_model_card

CLASSES = ["Benign", "Early", "Pre"]
SECTIONS = [
    "Model",
    "Data",
    "Task and split protocol",
    "Metrics",
    "Calibration",
    "Intended use",
    "Known limitations",
]
SPEC: dict[str, Any] = {
    "family": "transfer",
    "backbone": "efficientnet_lite0",
    "image_size": 224,
    "batch_size": 32,
    "learning_rate": 0.001,
    "head": {"pooling": "avg", "dense": [128]},
}


def split_table(protocol: str = "image") -> pd.DataFrame:
    """Benign 5/2/3, Early 4/1/2, Pre 6/2/1 images in train/val/test."""
    counts = {"Benign": (5, 2, 3), "Early": (4, 1, 2), "Pre": (6, 2, 1)}
    rows = [
        {"id": f"{label}/{split}{i}", "label": label, "split": split, "protocol": protocol}
        for label, per_split in counts.items()
        for split, n in zip(("train", "val", "test"), per_split, strict=True)
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def metrics_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "metric": ["accuracy", "f1_macro", "ece"],
            "value": [0.91234, 0.8766, 0.0412],
            "ci_low": [0.87501, 0.82, float("nan")],
            "ci_high": [0.94449, 0.91, float("nan")],
        }
    )


def render(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "dataset": "kaggle_all",
        "variant": "Original",
        "classes": CLASSES,
        "splits": split_table(),
        "metrics": metrics_table(),
    }
    arguments.update(overrides)
    return render_model_card("lite0_head", SPEC, **arguments)


def section(card: str, title: str) -> str:
    """The text of one ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, re.M | re.S)
    assert match is not None, f"no section {title!r}"
    return match.group(1)


def test_every_section_present_in_order() -> None:
    card = render()
    headings = re.findall(r"^## (.+)$", card, re.M)
    assert headings == SECTIONS
    assert card.startswith("# Model card: lite0_head (kaggle_all / Original)\n")


def test_not_for_diagnosis_stated_up_front_and_under_intended_use() -> None:
    card = render()
    assert NOT_FOR_DIAGNOSIS == "Not for diagnosis or clinical decisions."
    assert NOT_FOR_DIAGNOSIS in card.split("## Model")[0]
    intended = section(card, "Intended use")
    assert "Research benchmarking only" in intended and NOT_FOR_DIAGNOSIS in intended


def test_model_section_names_family_architecture_and_hyperparameters() -> None:
    model = section(render(info={"params": 3_500_000, "best_epoch": 7}), "Model")
    assert "transfer learning" in model
    assert "efficientnet_lite0 backbone" in model
    assert "| learning_rate | 0.001 |" in model
    assert "| image_size | 224 |" in model
    assert '| head | {"pooling": "avg", "dense": [128]} |' in model
    assert "- params: 3500000" in model and "- best_epoch: 7" in model
    assert "| family |" not in model  # identity keys are not listed as hyperparameters


def test_class_counts_per_split() -> None:
    data = section(render(), "Data")
    assert "| class | train | val | test | total |" in data
    assert "| Benign | 5 | 2 | 3 | 10 |" in data
    assert "| Early | 4 | 1 | 2 | 7 |" in data
    assert "| Pre | 6 | 2 | 1 | 9 |" in data
    assert "| total | 15 | 5 | 6 | 26 |" in data
    assert "- Classes (3): Benign, Early, Pre" in data


def test_metrics_with_rounded_confidence_intervals() -> None:
    metrics = section(render(ci_method="percentile bootstrap, 2000 resamples"), "Metrics")
    assert "| metric | value | 95 % CI |" in metrics
    assert "| accuracy | 0.9123 | [0.8750, 0.9445] |" in metrics
    assert "| f1_macro | 0.8766 | [0.8200, 0.9100] |" in metrics
    assert "| ece | 0.0412 | n/a |" in metrics  # a missing interval is not invented
    assert "percentile bootstrap, 2000 resamples" in metrics
    assert "| 90 % CI |" in section(render(ci_level=0.9), "Metrics")


def test_metrics_need_the_interval_columns() -> None:
    with pytest.raises(ValueError, match="ci_low"):
        render(metrics=metrics_table().drop(columns="ci_low"))


def test_calibration_ece_and_temperature() -> None:
    fitted = section(render(calibration={"ece": 0.0412, "temperature": 1.73}), "Calibration")
    assert "Expected calibration error (ECE): 0.0412" in fitted
    assert "Temperature (fitted on the validation split): 1.73" in fitted
    # Without a calibration mapping the ECE row of the metrics is used, and no temperature.
    from_metrics = section(render(), "Calibration")
    assert "ECE): 0.0412" in from_metrics and "Temperature scaling: not fitted" in from_metrics
    scaled = {
        "temperature": 1.5,
        "ece_before": 0.08,
        "ece_after": 0.03,
        "nll_before": 0.4,
        "nll_after": 0.3,
    }  # the fields of leukbench.calibration.TemperatureResult
    after = section(render(calibration=scaled), "Calibration")
    assert "Expected calibration error (ECE): 0.08" in after and "0.0412" not in after
    assert "ECE after temperature scaling: 0.03" in after
    assert "Negative log-likelihood after temperature scaling: 0.3" in after
    no_ece = metrics_table().iloc[:2]
    assert section(render(metrics=no_ece), "Calibration").strip() == "Not assessed."


@pytest.mark.parametrize(
    ("protocol", "shown", "patient_caveat"),
    [
        ("image", "**image-level**", True),
        ("group", "**patient-disjoint**", False),
        ("proxy_group", "**proxy-group**", True),
    ],
)
def test_split_protocol_from_the_split_table(
    protocol: str, shown: str, patient_caveat: bool
) -> None:
    card = render(splits=split_table(protocol))
    assert shown in section(card, "Task and split protocol")
    limitations = section(card, "Known limitations")
    assert ("No patient ids" in limitations) is patient_caveat
    assert "Single-centre data" in limitations


def test_limitations_given_first_then_generic() -> None:
    mine = ["The HSV range of study 003 leaves 74 % of masks empty | see README."]
    limitations = section(render(limitations=mine), "Known limitations")
    items = [line[2:] for line in limitations.splitlines() if line.startswith("- ")]
    assert items == [*mine, *generic_limitations("image", n_test=6)]
    assert "test split of 6 images" in items[-3]


def test_table_cells_escape_pipes() -> None:
    spec = {**SPEC, "note": "a|b"}
    card = render_model_card(
        "m",
        spec,
        dataset="d",
        variant="v",
        classes=CLASSES,
        splits=split_table(),
        metrics=metrics_table(),
    )
    assert "| note | a\\|b |" in card
