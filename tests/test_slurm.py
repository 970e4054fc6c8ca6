"""SLURM: the workflow through profiles/slurm on a real single-node cluster (.ci/slurm.sh).

Needs root and the slurm-wlm + munge packages (`bash .ci/slurm.sh install`); without them the
test fails, it never skips. The cluster has no accounting database and no GPU, so the run also
checks the profile's squeue status queries and its LEUKBENCH_SLURM_GPUS=0 override.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workflow_helpers import (
    REPO,
    default_config,
    sample_kaggle_all,
    small_config,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.e2e

SLURM_SH = REPO / ".ci" / "slurm.sh"
PROFILE = REPO / "profiles" / "slurm"
PARTITION = "debug"  # the partition .ci/slurm.sh creates
SLURM_LOGDIR = Path(os.environ.get("LEUKBENCH_SLURM_LOGDIR", "/var/log/slurm"))
PER_CLASS = 12  # SVM calibration needs 5 training images per class
DETERMINISTIC = ("svm", "xgboost")
# The per-model target rules: every compute rule up to the metrics, not the (local) reports.
TARGETS = DETERMINISTIC
# Job timings, not results: the only fields allowed to differ between the two runs.
TIMING_METRICS = {"train_seconds"}

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
CTLD_SUBMITTED = re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+)\b")
# Job headers in Snakemake's log: `rule x:` for submitted jobs, `localrule x:` for local ones.
JOB_HEADER = re.compile(r"^(rule|localrule) (\w+):$", re.MULTILINE)
# The dry run's job stats table: `<rule>  <count>`.
JOB_STATS = re.compile(r"^(\w+)\s+(\d+)$", re.MULTILINE)
# Rules that do the work: they must run on the cluster, never as local rules.
COMPUTE_RULES = {
    "ingest",
    "duplicates",
    "split",
    "segment",
    "features",
    "train_classic",
    "evaluate",
}


def _slurm_sh(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SLURM_SH), command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _daemons() -> dict[str, str]:
    """Running SLURM daemons by name -> their pids (empty when none)."""
    found = {}
    for name in ("slurmctld", "slurmd"):
        pgrep = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
        found[name] = pgrep.stdout.strip()
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    try:
        started = _slurm_sh("start")
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"bash .ci/slurm.sh start did not run: {error}", pytrace=False)
    if started.returncode != 0:
        pytest.fail(
            "bash .ci/slurm.sh start failed (root, slurm-wlm and munge are needed: "
            f"bash .ci/slurm.sh install):\n{started.stdout}\n{started.stderr}",
            pytrace=False,
        )
    yield
    stopped = _slurm_sh("stop")
    survivors = {name: pids for name, pids in _daemons().items() if pids}
    assert stopped.returncode == 0, f"slurm.sh stop failed:\n{stopped.stdout}\n{stopped.stderr}"
    assert not survivors, f"SLURM daemons still running after stop: {survivors}"


def _config(data: Path) -> dict[str, Any]:
    defaults = default_config()
    dataset = dict(defaults["datasets"]["kaggle_all"])
    dataset.pop("kaggle", None)
    dataset.update(source="local", path=str(data))
    config = small_config({"kaggle_all": dataset})
    xgboost = dict(defaults["models"]["xgboost"])
    xgboost["params"] = {**xgboost["params"], "n_estimators": 50}
    config["models"]["xgboost"] = xgboost
    return config


def _snakemake_log(workdir: Path) -> str:
    """The run's log file, .snakemake/log/<timestamp>.snakemake.log (one run per workdir)."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    assert len(logs) == 1, logs
    return logs[0].read_text()


def _job_rules(log: str) -> dict[str, Counter[str]]:
    """Jobs per rule in a run's log, split into submitted (`rule`) and local (`localrule`)."""
    rules: dict[str, Counter[str]] = {"rule": Counter(), "localrule": Counter()}
    for kind, rule in JOB_HEADER.findall(log):
        rules[kind][rule] += 1
    return rules


def _planned(dry_run: str) -> Counter[str]:
    """Jobs per rule from a dry run's job stats table."""
    table = dry_run[dry_run.index("Job stats:") :]
    return Counter({rule: int(n) for rule, n in JOB_STATS.findall(table) if rule != "total"})


def _canonical(path: Path) -> Any:
    """A metrics file without its timings, for the deterministic models only."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return {key: value for key, value in data.items() if key not in TIMING_METRICS}
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    kept = [lines[0]]
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=True))
        if row.get("metric") in TIMING_METRICS:
            continue
        if "model" in row and row["model"] not in DETERMINISTIC:
            continue
        kept.append(line)
    return kept


def _metrics_files(workdir: Path) -> dict[str, Path]:
    found = {}
    for pattern in ("metrics.tsv", "metrics.json"):
        for path in (workdir / "results").rglob(pattern):
            relative = path.relative_to(workdir)
            if relative.parent.name in DETERMINISTIC or path.suffix == ".tsv":
                found[str(relative)] = path
    return found


@pytest.fixture(scope="module")
def runs(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("slurm")
    config = _config(sample_kaggle_all(base / "data", PER_CLASS))
    slurm_dir, local_dir = base / "slurm", base / "local"
    for workdir in (slurm_dir, local_dir):
        write_config(workdir, config)

    # The CI cluster: its partition, and no GPU (the profile's documented CPU-only override).
    env = {**os.environ, "LEUKBENCH_SLURM_PARTITION": PARTITION, "LEUKBENCH_SLURM_GPUS": "0"}
    profile = ("--workflow-profile", str(PROFILE))
    planned = snakemake(slurm_dir, *profile, "--dry-run", *TARGETS, env=env)
    assert planned.returncode == 0, planned.stderr[-4000:]

    ctld_log = SLURM_LOGDIR / "slurmctld.log"
    ctld_offset = ctld_log.stat().st_size if ctld_log.exists() else 0
    start = time.monotonic()
    slurm = snakemake(
        slurm_dir,
        *profile,
        # Poll squeue every few seconds instead of 40 s: the jobs here take seconds.
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        *TARGETS,
        env=env,
    )
    slurm_seconds = time.monotonic() - start
    assert slurm.returncode == 0, slurm.stderr[-6000:]
    with ctld_log.open() as handle:
        handle.seek(ctld_offset)
        ctld_text = handle.read()

    start = time.monotonic()
    local = snakemake(local_dir, "--cores", "2", *TARGETS)
    local_seconds = time.monotonic() - start
    assert local.returncode == 0, local.stderr[-6000:]

    slurm_log = _snakemake_log(slurm_dir)
    submitted = dict(SUBMITTED.findall(slurm_log))  # snakemake job id -> SLURM job id
    record = {
        "slurm_wall_seconds": round(slurm_seconds, 1),
        "local_wall_seconds": round(local_seconds, 1),
        "jobs_submitted": len(submitted),
        "jobs_planned": sum(_planned(planned.stdout + planned.stderr).values()),
        "jobs_local": sum(_job_rules(slurm_log)["localrule"].values()),
        "slurm_job_ids": sorted(map(int, submitted.values())),
    }
    (base / "slurm_run.json").write_text(json.dumps(record, indent=2))
    print(f"\nSLURM run ({base / 'slurm_run.json'}): {json.dumps(record)}")
    return {
        "slurm_dir": slurm_dir,
        "local_dir": local_dir,
        "planned_log": planned.stdout + planned.stderr,
        "slurm_log": slurm_log,
        "slurm_console": slurm.stderr,
        "submitted": submitted,
        "ctld_text": ctld_text,
    }


def test_profile_is_the_workflow_profile_and_status_comes_from_squeue(
    runs: dict[str, Any],
) -> None:
    assert f"workflow specific profile {PROFILE}" in runs["slurm_console"]
    log = runs["slurm_log"]
    # The profile asks for squeue; the plugin would say so if it fell back to sacct, which
    # fails on this cluster (no accounting database).
    assert "Falling back to 'sacct'" not in log
    assert "accounting storage is disabled" not in log


def test_every_non_local_job_went_through_slurm(runs: dict[str, Any]) -> None:
    planned = _planned(runs["planned_log"])
    ran = _job_rules(runs["slurm_log"])
    submitted = runs["submitted"]
    # The SLURM run ran exactly the planned jobs; the compute rules were not local.
    assert ran["rule"] + ran["localrule"] == planned
    assert set(ran["rule"]) >= COMPUTE_RULES
    assert not set(ran["localrule"]) & COMPUTE_RULES
    # One SLURM submission per planned non-local job, each with its own SLURM job id.
    non_local = sum(planned.values()) - sum(ran["localrule"].values())
    assert len(submitted) == non_local == sum(ran["rule"].values())
    assert len(set(submitted.values())) == len(submitted)

    ctld_ids = set(CTLD_SUBMITTED.findall(runs["ctld_text"]))
    assert set(submitted.values()) == ctld_ids, (
        "SLURM job ids in Snakemake's log and in slurmctld's log differ"
    )
    # squeue (MinJobAge=600) still lists every job of the run, all completed.
    squeue = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T|%P"],
        capture_output=True,
        text=True,
        check=True,
    )
    states = dict(
        (line.split("|")[0], line.split("|")[1:]) for line in squeue.stdout.split() if line
    )
    for job_id in submitted.values():
        assert states.get(job_id) == ["COMPLETED", PARTITION], (job_id, states.get(job_id))


def test_slurm_and_local_metrics_are_identical(runs: dict[str, Any]) -> None:
    on_slurm = _metrics_files(runs["slurm_dir"])
    local = _metrics_files(runs["local_dir"])
    assert on_slurm.keys() == local.keys()
    for model in DETERMINISTIC:
        assert any(Path(p).parent.name == model and p.endswith(".json") for p in on_slurm), model
    for relative, path in sorted(on_slurm.items()):
        assert _canonical(path) == _canonical(local[relative]), relative
