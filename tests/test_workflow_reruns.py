"""Config edits rerun exactly what they change: dry runs over a finished small run.

Users must never need --forcerun: Snakemake's params (and input) rerun triggers, fed only the
config slice each rule depends on, decide what reruns.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_helpers import REPO, local_all_config, sample_kaggle_all, snakemake, write_config

pytestmark = pytest.mark.e2e

REPORTING = {
    "compare_models": 1,
    "metrics_table": 1,
    "report_section": 1,
    "task_report": 1,
    "report": 1,
    "all": 1,
}


def _config(data: Path) -> dict[str, Any]:
    config = local_all_config(data)
    config["models"] = {
        "svm": {"family": "svm", "grid": {"kernel": ["rbf"], "C": [1], "gamma": ["scale"]}},
        "xgboost": {"family": "xgboost", "params": {"n_estimators": 30, "max_depth": 3}},
        "aml_cnn": {
            **config["models"]["aml_cnn"],
            "image_size": 32,
            "epochs": 1,
        },
    }
    config["duplicates"]["variant"] = None
    # Leakage twins need more than 6 images per class; tests/test_workflow_e2e.py covers them.
    config["leakage"] = {"check": False}
    config["evaluation"] = {"bootstrap_resamples": 200, "repeat_seeds": [1, 2]}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("reruns")
    config = _config(sample_kaggle_all(workdir / "data", 6))
    write_config(workdir, config)
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, config


def planned_jobs(workdir: Path, config: dict[str, Any]) -> dict[str, int]:
    """Rule -> job count of a dry run with `config`, by the CLI and by the Python API, which
    must agree."""
    edited = workdir / "config" / "edited.yaml"
    edited.write_text(yaml.safe_dump(config, sort_keys=False))
    by_cli = _cli_dry_run(workdir, edited)
    api = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("dryrun_api.py")),
            str(REPO / "Snakefile"),
            str(workdir),
            str(edited),
            "all",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert api.returncode == 0, api.stderr[-3000:]
    by_api = json.loads(api.stdout.strip().splitlines()[-1])
    assert by_api == by_cli
    return by_cli


def _cli_dry_run(workdir: Path, edited: Path) -> dict[str, int]:
    result = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", str(edited), "--", "all")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1]
    return {
        rule: int(count)
        for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)
        if rule != "total"
    }


def test_touching_nothing_schedules_nothing(finished: tuple[Path, dict]) -> None:
    workdir, config = finished
    assert planned_jobs(workdir, config) == {}


def test_one_hyperparameter_reruns_that_model_its_evaluation_and_the_report(
    finished: tuple[Path, dict],
) -> None:
    workdir, config = finished
    edited = copy.deepcopy(config)
    edited["models"]["svm"]["grid"]["C"] = [1, 10]
    # svm runs on both variants: its trainings, evaluations, refits on the 2 re-splits and
    # model cards, the paired tests and the report; nothing of xgboost or the CNN.
    assert planned_jobs(workdir, edited) == {
        "train_classic": 2,
        "evaluate": 2,
        "repeat_classic": 4,
        "evaluate_repeats": 2,
        "model_card": 2,
        **REPORTING,
    }


def test_deep_hyperparameter_reruns_only_that_deep_model(finished: tuple[Path, dict]) -> None:
    workdir, config = finished
    edited = copy.deepcopy(config)
    edited["models"]["aml_cnn"]["learning_rate"] = 0.0005
    assert planned_jobs(workdir, edited) == {
        "train_deep": 1,
        "evaluate": 1,
        "gradcam": 1,
        "repeat_deep": 2,
        "evaluate_repeats": 1,
        "model_card": 1,
        **REPORTING,
    }


def test_cost_matrix_reruns_only_evaluation_and_report(finished: tuple[Path, dict]) -> None:
    workdir, config = finished
    edited = copy.deepcopy(config)
    edited["tasks"]["all_subtypes"]["cost_matrix"][0][1] = 12
    # 2 classic models x 2 variants + the CNN on Original; the re-splits' predictions are
    # scored again with the new cost matrix. No training, not even on the re-splits.
    assert planned_jobs(workdir, edited) == {
        "evaluate": 5,
        "evaluate_repeats": 5,
        "model_card": 5,
        **REPORTING,
    }


def test_segmentation_thresholds_rerun_segmentation_and_everything_downstream(
    finished: tuple[Path, dict],
) -> None:
    workdir, config = finished
    edited = copy.deepcopy(config)
    edited["segmentation"]["saturation_min"] = 0.3
    # The CNN reads raw images, not masks, so it is not downstream of segmentation.
    assert planned_jobs(workdir, edited) == {
        "segment": 2,
        "segmentation_qc": 2,
        "eda": 1,
        "features": 2,
        "train_classic": 4,
        "repeat_classic": 8,
        "evaluate_repeats": 4,
        "explain_xgboost": 2,
        "evaluate": 4,
        "model_card": 4,
        **REPORTING,
    }


def test_another_repeat_seed_trains_only_that_resplit(finished: tuple[Path, dict]) -> None:
    workdir, config = finished
    edited = copy.deepcopy(config)
    edited["evaluation"]["repeat_seeds"] = [1, 2, 3]
    # Every model once on the new re-split (4 classic, 1 CNN); seeds 1 and 2 are kept. The
    # report section, which names the seeds, is rebuilt with the task's other summaries.
    assert planned_jobs(workdir, edited) == {
        "repeat_classic": 4,
        "repeat_deep": 1,
        "evaluate_repeats": 5,
        "report_section": 1,
        "task_report": 1,
        "report": 1,
        "all": 1,
    }


def test_reordering_a_models_keys_reruns_nothing(finished: tuple[Path, dict]) -> None:
    workdir, config = finished
    edited = copy.deepcopy(config)
    edited["models"]["xgboost"] = dict(reversed(list(config["models"]["xgboost"].items())))
    # Only the run report, which prints the configuration as written, is rebuilt.
    assert planned_jobs(workdir, edited) == {"report": 1, "all": 1}
