"""Run provenance: code version, configuration hash, machine, seeds and packages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from leukbench.provenance import (
    collect,
    config_hash,
    git_state,
    job_provenance,
    package_versions,
    read_provenance,
    write_run_provenance,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"seed": 7, "split": {"seed": 11, "ratios": {"train": 0.6}}, "models": {"svm": {}}}


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    run = {"cwd": repo, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (repo / "a.txt").write_text("one")
    subprocess.run(["git", "add", "a.txt"], **run)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], **run
    )
    return repo


def test_git_state_reports_commit_and_dirty_flag(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    clean = git_state(repo)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert clean == {"commit": head, "dirty": False, "changed_files": 0}
    (repo / "untracked.txt").write_text("ignored for the flag")
    assert git_state(repo)["dirty"] is False
    (repo / "a.txt").write_text("two")
    assert git_state(repo) == {"commit": head, "dirty": True, "changed_files": 1}
    assert git_state(tmp_path / "nowhere")["commit"] is None


def test_config_hash_ignores_key_order_and_sees_every_value() -> None:
    reordered = {"models": {"svm": {}}, "split": {"ratios": {"train": 0.6}, "seed": 11}, "seed": 7}
    assert config_hash(CONFIG) == config_hash(reordered)
    changed = json.loads(json.dumps(CONFIG))
    changed["split"]["ratios"]["train"] = 0.61
    assert config_hash(changed) != config_hash(CONFIG)
    assert len(config_hash(CONFIG)) == 64


def test_collect_has_every_field_the_report_shows() -> None:
    record = collect(CONFIG, ["snakemake", "--cores", "2", "all"], REPO)
    assert record["command"] == "snakemake --cores 2 all"
    assert record["seeds"] == {"seed": 7, "split.seed": 11}
    assert record["config_sha256"] == config_hash(CONFIG)
    assert record["git"]["commit"] and len(record["git"]["commit"]) == 40
    assert record["cpu"]["logical_cores"] >= 1 and record["cpu"]["model"]
    assert isinstance(record["gpus"], list)
    assert record["packages"]["snakemake"] and record["packages"]["scikit-learn"]


def test_package_versions_name_the_installed_distribution() -> None:
    versions = package_versions((("xgboost-cpu", "xgboost"), ("no-such-package-xyz",)))
    assert versions.get("xgboost-cpu") or versions.get("xgboost")
    assert versions["no-such-package-xyz"] is None


def test_written_record_is_dated_and_latest(tmp_path: Path) -> None:
    dated = write_run_provenance(CONFIG, ["snakemake", "all"], REPO, tmp_path / "prov")
    latest = read_provenance(tmp_path / "prov" / "latest.json")
    assert latest == json.loads(dated.read_text())
    assert read_provenance(tmp_path / "missing.json") is None


def test_job_provenance_lists_host_and_packages() -> None:
    record = job_provenance()
    assert record["host"] and record["python"] and "numpy" in record["packages"]
