"""Remote and custom data sources through the whole workflow, with no internet.

A local HTTP server on 127.0.0.1 plays Kaggle's download endpoint; a plain image folder with
patient ids in its file names stands in for a user's own dataset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from download_server import DownloadServer, build_zip, image_members, serve
from workflow_helpers import (
    default_config,
    patient_folder_dataset,
    small_config,
    snakemake,
    write_config,
)

USER, KEY = "leukuser", "s3cr3t-kaggle-key-0123456789"
CLASSES = ["A", "B"]


def _kaggle_dataset(base_url: str) -> dict:
    return {
        "source": "kaggle",
        "kaggle": {"slug": "someone/toy-smears", "base_url": f"{base_url}/api/v1", "subdir": "toy"},
        "variants": ["Original"],
        "classes": CLASSES,
    }


def _env(home: Path, with_credentials: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env |= {"HOME": str(home), "LEUKBENCH_PROGRESS": "0"}
    if with_credentials:
        env |= {"KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY}
    return env


@pytest.fixture
def kaggle_server() -> Iterator[DownloadServer]:
    names = [f"toy/Original/{c}/img{i:02d}.png" for c in CLASSES for i in range(12)]
    with serve() as server:
        server.add_kaggle_dataset(
            "someone/toy-smears", build_zip(image_members(names)), username=USER, key=KEY
        )
        yield server


def _all_text(workdir: Path) -> str:
    texts = []
    for folder in ("logs", "results", "reports", ".snakemake/log"):
        for path in (workdir / folder).rglob("*"):
            if path.is_file() and path.suffix in (".log", ".tsv", ".json", ".html", ".txt", ""):
                texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_kaggle_source_downloads_once_and_never_leaks_the_key(
    tmp_path: Path, kaggle_server: DownloadServer
) -> None:
    assert kaggle_server.base_url.startswith("http://127.0.0.1:")
    write_config(tmp_path, small_config({"toy": _kaggle_dataset(kaggle_server.base_url)}))
    env = _env(tmp_path / "home", with_credentials=True)

    planned = snakemake(tmp_path, "-n", "all", env=env)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert re.search(r"^download_kaggle\s+1$", planned.stdout, flags=re.MULTILINE)
    assert kaggle_server.request_count() == 0  # planning never touches the network

    result = snakemake(tmp_path, "--cores", "2", "all", env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "reports/report.html").is_file()
    manifest = pd.read_csv(tmp_path / "results/toy/manifest.tsv", sep="\t")
    assert len(manifest) == 24 and set(manifest["label"]) == set(CLASSES)
    downloads = kaggle_server.request_count()
    assert downloads >= 1

    again = snakemake(tmp_path, "--cores", "2", "all", env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert kaggle_server.request_count() == downloads  # the second run downloads nothing
    assert KEY not in _all_text(tmp_path) + result.stdout + result.stderr


def test_missing_kaggle_credentials_say_what_to_do(
    tmp_path: Path, kaggle_server: DownloadServer
) -> None:
    write_config(tmp_path, small_config({"toy": _kaggle_dataset(kaggle_server.base_url)}))
    result = snakemake(tmp_path, "--cores", "1", "all", env=_env(tmp_path / "home", False))
    assert result.returncode != 0
    log = (tmp_path / "logs/toy/download.log").read_text()
    assert "kaggle.json" in log and "KAGGLE_USERNAME" in log, log[-2000:]
    assert not (tmp_path / "resources/toy/download/archive.zip").exists()


def test_folder_source_with_patient_ids_runs_to_the_report(tmp_path: Path) -> None:
    dataset = patient_folder_dataset(tmp_path, CLASSES)
    tasks = {"mine_ab": {"dataset": "mine", "cost_matrix": [[0, 1], [5, 0]]}}
    write_config(tmp_path, small_config({"mine": dataset}, tasks))
    result = snakemake(tmp_path, "--cores", "2", "all")
    assert result.returncode == 0, result.stderr[-4000:]
    html = (tmp_path / "reports/mine_ab.html").read_text()
    assert 'class="protocol">patient-disjoint<' in html and "Image-level split" not in html
    assert "[[0, 1], [5, 0]]" in html
    splits = pd.read_csv(tmp_path / "results/mine/mine_ab/splits.tsv", sep="\t")
    assert (splits["protocol"] == "group").all() and len(splits) == 36
    assert (splits.groupby("group")["split"].nunique() == 1).all()


# --- TCIA: C-NMC-like (subject ids in file names, three folds) and MLL-like (patient folders) ---


def _cnmc_members() -> dict[str, bytes]:
    names = [
        f"C-NMC_Leukemia/training_data/fold_{fold}/{label}/UID_{prefix}{subject}_{image}_1_{label}.bmp"
        for fold in range(3)
        for label, prefix in (("all", ""), ("hem", "H"))
        for subject in range(fold * 3, fold * 3 + 3)
        for image in range(2)
    ]
    members = image_members(names, fmt="BMP")
    members["C-NMC_Leukemia/testing_data/C-NMC_test_final_phase_data/1.bmp"] = b"BM" + b"\0" * 60
    return members


def _mll_members() -> dict[str, bytes]:
    names = [
        f"data/{label}/{label[:3].upper()}{patient}/image_{image}.tif"
        for label in ("control", "NPM1", "PML_RARA")
        for patient in range(6)
        for image in range(3)
    ]
    return image_members(names, fmt="TIFF", start_seed=500)


@pytest.fixture
def tcia_server() -> Iterator[DownloadServer]:
    with serve() as server:
        server.add_tcia_wordpress_collection(
            "C-NMC 2019",
            [("C-NMC Leukemia images", "/files/C-NMC_Leukemia.zip", build_zip(_cnmc_members()))],
        )
        server.add_tcia_wordpress_collection(
            "AML-Cytomorphology_MLL_Helmholtz",
            [("Single-cell images", "/files/MLL.zip", build_zip(_mll_members()))],
        )
        server.add_tcia_wordpress_collection(
            "AML-Cytomorphology_LMU", [("TIFF images", "/files/lmu.zip", None)]
        )
        yield server


def _tcia_config(base_url: str) -> dict:
    api = f"{base_url}/api/v2/"
    datasets = {
        "cnmc": {
            "source": "tcia",
            "tcia": {
                "collection": "C-NMC 2019",
                "api_base_url": api,
                "downloads": ["C-NMC"],
                "subdir": "C-NMC_Leukemia/training_data",
            },
            "layout": "flat",
            "variants": ["Original"],
            "class_roots": ["fold_0", "fold_1", "fold_2"],
            "classes": ["all", "hem"],
            "group_regex": r"UID_(?P<group>H?\d+)_\d+_\d+_(?:all|hem)\.bmp$",
        },
        "mll": {
            "source": "tcia",
            "tcia": {
                "collection": "AML-Cytomorphology_MLL_Helmholtz",
                "api_base_url": api,
                "subdir": "data",
            },
            "layout": "flat",
            "variants": ["Original"],
            "classes": ["control", "NPM1", "PML_RARA"],
            "group_regex": r"^(?P<group>[^/]+)/[^/]+$",
        },
    }
    tasks = {
        "cnmc_all_vs_hem": {
            "dataset": "cnmc",
            "classes": {"all": ["all"], "hem": ["hem"]},
            "protocol": "group",
        },
        "mll_npm1_vs_normal": {
            "dataset": "mll",
            "classes": {"normal": ["control"], "NPM1": ["NPM1"]},
            "n_total": 30,
            "protocol": "group",
        },
        "mll_aml_vs_normal": {
            "dataset": "mll",
            "classes": {"normal": ["control"], "aml": ["NPM1", "PML_RARA"]},
            "n_per_class": "min",
            "protocol": "group",
        },
    }
    config = small_config(datasets, tasks)
    config["duplicates"]["max_distance"] = -1  # synthetic images are all alike to pHash
    return config


def test_tcia_sources_run_every_task_patient_disjoint(
    tmp_path: Path, tcia_server: DownloadServer
) -> None:
    write_config(tmp_path, _tcia_config(tcia_server.base_url))
    env = _env(tmp_path / "home", with_credentials=False)  # TCIA needs no credentials

    planned = snakemake(tmp_path, "-n", "all", env=env)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert re.search(r"^download_tcia\s+2$", planned.stdout, flags=re.MULTILINE)
    # Three tasks, each with its image-level leakage twin.
    assert re.search(r"^split\s+6$", planned.stdout, flags=re.MULTILINE)
    assert tcia_server.request_count() == 0  # planning never touches the network

    result = snakemake(tmp_path, "--cores", "2", "all", env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    cnmc = pd.read_csv(tmp_path / "results/cnmc/manifest.tsv", sep="\t")
    assert len(cnmc) == 36 and set(cnmc["group"]) == {
        *map(str, range(9)),
        *(f"H{i}" for i in range(9)),
    }
    for task in ("cnmc_all_vs_hem", "mll_npm1_vs_normal", "mll_aml_vs_normal"):
        dataset = "cnmc" if task.startswith("cnmc") else "mll"
        splits = pd.read_csv(tmp_path / f"results/{dataset}/{task}/splits.tsv", sep="\t")
        assert (splits["protocol"] == "group").all(), task
        assert (splits.groupby("group")["split"].nunique() == 1).all(), task  # no patient crosses
        assert set(splits["split"]) == {"train", "val", "test"}, task
    npm1 = pd.read_csv(tmp_path / "results/mll/mll_npm1_vs_normal/splits.tsv", sep="\t")
    assert npm1["label"].value_counts().to_dict() == {"normal": 15, "NPM1": 15}
    merged = pd.read_csv(tmp_path / "results/mll/mll_aml_vs_normal/splits.tsv", sep="\t")
    assert set(merged.loc[merged["label"] == "aml", "source_label"]) == {"NPM1", "PML_RARA"}
    assert merged["label"].value_counts().to_dict() == {"normal": 18, "aml": 18}
    html = (tmp_path / "reports/report.html").read_text()
    for task in ("cnmc_all_vs_hem", "mll_npm1_vs_normal", "mll_aml_vs_normal"):
        assert f'id="task-{task}"' in html
    assert html.count('class="protocol">patient-disjoint<') == 3
    listing = json.loads((tmp_path / "resources/cnmc/download/tcia.json").read_text())
    assert [f["filename"] for f in listing["files"]] == ["C-NMC_Leukemia.zip"]

    downloads = tcia_server.request_count()
    again = snakemake(tmp_path, "--cores", "2", "all", env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert tcia_server.request_count() == downloads  # the second run downloads nothing


def test_aspera_only_tcia_collection_fails_with_instructions(
    tmp_path: Path, tcia_server: DownloadServer
) -> None:
    dataset = {
        "source": "tcia",
        "tcia": {
            "collection": "AML-Cytomorphology_LMU",
            "api_base_url": f"{tcia_server.base_url}/api/v2/",
        },
        "layout": "flat",
        "variants": ["Original"],
        "classes": ["MYO", "NGS"],
    }
    write_config(tmp_path, small_config({"lmu": dataset}))
    result = snakemake(tmp_path, "--cores", "1", "all", env=_env(tmp_path / "home", False))
    assert result.returncode != 0
    log = (tmp_path / "logs/lmu/download.log").read_text()
    assert "IBM Aspera" in log and "source: local" in log, log[-2000:]
    assert not (tmp_path / "resources/lmu/download/tcia.json").exists()


def test_default_config_plans_every_download_and_task_without_network(tmp_path: Path) -> None:
    write_config(tmp_path, default_config())
    unreachable = "http://127.0.0.1:9"  # any request would fail at once
    env = {**os.environ, "HTTP_PROXY": unreachable, "HTTPS_PROXY": unreachable}
    planned = snakemake(tmp_path, "all", "-n", "--quiet", "rules", env=env, timeout=300)
    assert planned.returncode == 0, planned.stderr[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", planned.stdout, flags=re.MULTILINE))
    tasks = default_config()["tasks"]
    assert jobs["download_kaggle"] == "1" and jobs["download_tcia"] == "3"
    assert jobs["extract_dataset"] == "4" and jobs["ingest"] == "4"
    assert jobs["split"] == str(2 * len(tasks)) == "14"  # every task and its leakage twin
    assert jobs["report_section"] == "7" and jobs["task_report"] == "7" and jobs["report"] == "1"
    assert not (tmp_path / "resources").exists()
