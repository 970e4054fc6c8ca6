"""Helpers for tests that run the real Snakemake workflow in a scratch working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
KAGGLE_ALL = Path(os.environ.get("LEUKBENCH_KAGGLE_ALL", REPO.parent / "shared/data/kaggle-all"))


def require_kaggle_all() -> Path:
    """The real ALL dataset; its absence is a failure, never a silent skip."""
    if not (KAGGLE_ALL / "Original").is_dir():
        raise FileNotFoundError(
            f"real Kaggle ALL data not found at {KAGGLE_ALL}; place the dataset there "
            "(../shared/data/kaggle-all beside the repository) or set LEUKBENCH_KAGGLE_ALL"
        )
    return KAGGLE_ALL


def sample_kaggle_all(dest: Path, per_class: int) -> Path:
    """Copy the first `per_class` images of every class and variant into `dest`."""
    source = require_kaggle_all()
    for variant in ("Original", "Segmented"):
        for class_dir in sorted((source / variant).iterdir()):
            target = dest / variant / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy2(image, target / image.name)
    return dest


def default_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def write_config(workdir: Path, config: dict[str, Any]) -> Path:
    path = workdir / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(
    workdir: Path, *args: str, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the repository's workflow with `workdir` as working directory."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def local_all_config(path: Path) -> dict[str, Any]:
    """The default config reduced to the Kaggle ALL dataset read from `path` and its task."""
    config = default_config()
    dataset = config["datasets"]["kaggle_all"]
    dataset.pop("kaggle")
    config["datasets"] = {"kaggle_all": {**dataset, "source": "local", "path": str(path)}}
    config["tasks"] = {"all_subtypes": config["tasks"]["all_subtypes"]}
    return config


def task_of(dataset: str) -> str:
    """The name small_config gives the one task of `dataset`."""
    return f"{dataset}_task"


def small_config(datasets: dict[str, Any], tasks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default config with only the given datasets (one task each, unless given) and a
    fast SVM."""
    config = default_config()
    config["datasets"] = datasets
    config["tasks"] = tasks or {task_of(name): {"dataset": name} for name in datasets}
    config["models"] = {
        "svm": {"family": "svm", "grid": {"kernel": ["rbf"], "C": [1], "gamma": ["scale"]}}
    }
    config["duplicates"]["variant"] = None
    return config


def patient_folder_dataset(root: Path, classes: list[str]) -> dict[str, Any]:
    """A synthetic `folder` dataset under root/data with patient ids in the file names
    (P<nn>_<i>.png, 3 images per patient, 6 patients per class), and its config entry."""
    from download_server import image_members

    names = [
        f"{c}/P{p:02d}_{i}.png"
        for c in classes
        for p in range(c == classes[1], 12, 2)
        for i in range(3)
    ]
    for name, data in image_members(names).items():
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_bytes(data)
    return {
        "source": "folder",
        "path": str(root / "data"),
        "classes": classes,
        "group_regex": r"^(P\d+)_",
    }
