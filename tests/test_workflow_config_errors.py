"""Invalid config stops the workflow at parse time with one message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from workflow_helpers import default_config, snakemake, write_config


def _break(config: dict, case: str, tmp_path: Path) -> str:
    dataset = config["datasets"]["kaggle_all"]
    dataset["path"] = str(tmp_path)  # exists
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
        dataset["cost_matrix"] = [[0, 1], [1, 0]]
        return "datasets.kaggle_all.cost_matrix: must be 4x4"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["unknown key", "wrong type", "missing data path", "malformed cost matrix"]
)
def test_invalid_config_stops_before_any_job(tmp_path: Path, case: str) -> None:
    config = default_config()
    expected = _break(config, case, tmp_path)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1", "all", timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert expected in output, output[-3000:]
    assert not (tmp_path / "results").exists()
