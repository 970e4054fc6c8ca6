"""Invalid config stops the workflow at parse time with one message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_helpers import local_all_config, snakemake, write_config


def _break(config: dict, case: str, tmp_path: Path) -> str:
    dataset = config["datasets"]["kaggle_all"]
    if case == "unknown key":
        config["segmentation"]["hue_maximum"] = 0.9
        return "segmentation.hue_maximum: unknown key"
    if case == "wrong type":
        config["split"]["seed"] = "abc"
        return "split.seed"
    if case == "missing data path":
        dataset["path"] = str(tmp_path / "nowhere")
        return "datasets.kaggle_all.path"
    if case == "malformed cost matrix":
        config["tasks"]["all_subtypes"]["cost_matrix"] = [[0, 1], [1, 0]]
        return "tasks.all_subtypes.cost_matrix: must be 4x4"
    if case == "task on an unknown dataset":
        config["tasks"]["all_subtypes"]["dataset"] = "kaggle_al"
        return "tasks.all_subtypes.dataset: unknown dataset 'kaggle_al'"
    if case == "task label from another dataset":
        config["tasks"]["all_subtypes"]["classes"] = {"blast": ["Pro", "MYO"], "rest": ["Benign"]}
        return "tasks.all_subtypes.classes.blast: 'MYO' is not a class of dataset 'kaggle_all'"
    if case == "patient-disjoint without ids":
        config["tasks"]["all_subtypes"]["protocol"] = "group"
        return "tasks.all_subtypes.protocol: 'group' needs patient ids"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "unknown key",
        "wrong type",
        "missing data path",
        "malformed cost matrix",
        "task on an unknown dataset",
        "task label from another dataset",
        "patient-disjoint without ids",
    ],
)
def test_invalid_config_stops_before_any_job(tmp_path: Path, case: str) -> None:
    config = local_all_config(tmp_path)  # an existing folder
    expected = _break(config, case, tmp_path)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1", "all", timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert expected in output, output[-3000:]
    assert not (tmp_path / "results").exists()
