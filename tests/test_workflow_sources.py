"""Remote and custom data sources through the whole workflow, with no internet.

A local HTTP server on 127.0.0.1 plays Kaggle's download endpoint; a plain image folder with
patient ids in its file names stands in for a user's own dataset.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from download_server import DownloadServer, build_zip, image_members, serve
from workflow_helpers import small_config, snakemake, write_config

USER, KEY = "leukuser", "s3cr3t-kaggle-key-0123456789"
CLASSES = ["A", "B"]


def _kaggle_dataset(base_url: str) -> dict:
    return {
        "source": "kaggle",
        "kaggle": {"slug": "someone/toy-smears", "base_url": f"{base_url}/api/v1", "subdir": "toy"},
        "variants": ["Original"],
        "classes": CLASSES,
        "cost_matrix": [[0, 1], [5, 0]],
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
    assert (tmp_path / "reports/toy/report.html").is_file()
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
    names = [
        f"{c}/P{p:02d}_{i}.png" for c in CLASSES for p in range(c == "B", 12, 2) for i in range(3)
    ]
    for name, data in image_members(names).items():
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(data)
    dataset = {
        "source": "folder",
        "path": str(tmp_path / "data"),
        "classes": CLASSES,
        "group_regex": r"^(P\d+)_",
        "cost_matrix": [[0, 1], [1, 0]],
    }
    write_config(tmp_path, small_config({"mine": dataset}))
    result = snakemake(tmp_path, "--cores", "2", "all")
    assert result.returncode == 0, result.stderr[-4000:]
    html = (tmp_path / "reports/mine/report.html").read_text()
    assert "patient/group-disjoint" in html and "Image-level split" not in html
    splits = pd.read_csv(tmp_path / "results/mine/splits.tsv", sep="\t")
    assert (splits["protocol"] == "group").all() and len(splits) == 36
    assert (splits.groupby("group")["split"].nunique() == 1).all()
