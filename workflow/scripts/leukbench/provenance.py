"""What produced a run: code version, packages, configuration, machine, seeds and command line."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Distribution names; the first of each tuple that is installed is reported.
PACKAGES: tuple[tuple[str, ...], ...] = (
    ("snakemake",),
    ("numpy",),
    ("scipy",),
    ("pandas",),
    ("scikit-learn",),
    ("scikit-image",),
    ("xgboost-cpu", "xgboost"),
    ("tensorflow-cpu", "tensorflow"),
    ("keras",),
    ("pillow",),
    ("imagehash",),
    ("matplotlib",),
    ("seaborn",),
    ("jinja2",),
    ("requests",),
    ("kagglehub",),
    ("tcia-utils",),
    ("snakemake-executor-plugin-slurm",),
)


def package_versions(packages: tuple[tuple[str, ...], ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for names in packages:
        found = None
        for name in names:
            try:
                found = (name, metadata.version(name))
                break
            except metadata.PackageNotFoundError:
                continue
        versions[found[0] if found else names[0]] = found[1] if found else None
    return versions


def _git(folder: Path, *args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    result = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=False, timeout=30
    )
    return result.stdout.strip() if result.returncode == 0 else None


def git_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The commit checked out in `folder` and whether tracked files differ from it."""
    folder = Path(folder)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "note": f"{folder} is not a git checkout"}
    changes = _git(folder, "status", "--porcelain", "--untracked-files=no") or ""
    return {"commit": commit, "dirty": bool(changes), "changed_files": len(changes.splitlines())}


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the configuration in canonical JSON (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"model": model, "logical_cores": os.cpu_count(), "machine": platform.machine()}


def gpu_info() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi lists them (without importing TensorFlow); [] when none."""
    if shutil.which("nvidia-smi") is None:
        return []
    result = subprocess.run(
        [
            "nvidia-smi",
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        return []
    gpus = []
    for line in result.stdout.strip().splitlines():
        name, memory, driver = (part.strip() for part in line.split(",", 2))
        gpus.append({"name": name, "memory": memory, "driver": driver})
    return gpus


def seeds(config: dict[str, Any]) -> dict[str, Any]:
    return {"seed": config.get("seed"), "split.seed": config.get("split", {}).get("seed")}


def collect(
    config: dict[str, Any], argv: list[str], workflow_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    return {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join(argv),
        "working_directory": str(Path.cwd()),
        "git": git_state(workflow_dir),
        "config_sha256": config_hash(config),
        "seeds": seeds(config),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu": cpu_info(),
        "gpus": gpu_info(),
        "packages": package_versions(),
    }


def write_run_provenance(
    config: dict[str, Any],
    argv: list[str],
    workflow_dir: str | os.PathLike[str],
    folder: str | os.PathLike[str],
) -> Path:
    """Write <folder>/<start time>.json and <folder>/latest.json; return the dated file."""
    record = collect(config, argv, workflow_dir)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dated = folder / f"{record['started'].replace(':', '')}.json"
    text = json.dumps(record, indent=2)
    dated.write_text(text)
    latest = folder / "latest.json"
    tmp = latest.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(latest)
    return dated


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def job_provenance() -> dict[str, Any]:
    """Where one job ran (on a cluster, jobs run on other nodes than the run's head)."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_info(),
        "gpus": gpu_info(),
        "packages": {k: v for k, v in package_versions().items() if v is not None},
    }
