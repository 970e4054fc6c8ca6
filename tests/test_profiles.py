"""The workflow profiles agree with the rules: deep-learning rules ask SLURM for a GPU (or CPUs on
a CPU-only cluster), and threads match the CPUs each job requests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
import yte

REPO = Path(__file__).resolve().parents[1]
RULE = re.compile(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", flags=re.MULTILINE | re.DOTALL)


def rules_in_env(env: str) -> set[str]:
    found = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in RULE.findall(path.read_text()):
            if f'"../../envs/{env}"' in body:
                found.add(name)
    return found


def slurm_profile(monkeypatch: pytest.MonkeyPatch, gpus: str) -> dict[str, Any]:
    monkeypatch.setenv("LEUKBENCH_SLURM_GPUS", gpus)
    with open(REPO / "profiles" / "slurm" / "config.yaml") as handle:
        return yte.process_yaml(handle)


def test_every_deep_learning_rule_asks_for_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = rules_in_env("deep.yaml")
    assert {"feature_cache", "train_deep", "repeat_deep"} <= deep
    profile = slurm_profile(monkeypatch, "1")
    for rule in deep - {"gradcam"}:  # Grad-CAM runs a trained model on a few images
        resources = profile["set-resources"][rule]
        assert resources["gpu"] == 1, rule
        assert resources["cpus_per_gpu"] == profile["set-threads"][rule], rule
        assert "cpus_per_task" not in resources, rule


def test_cpu_only_clusters_get_cpus_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = slurm_profile(monkeypatch, "0")
    for rule in rules_in_env("deep.yaml") - {"gradcam"}:
        resources = profile["set-resources"][rule]
        assert "gpu" not in resources and "cpus_per_gpu" not in resources, rule
        assert resources["cpus_per_task"] == profile["set-threads"][rule], rule


def test_threads_agree_between_profiles_and_with_slurm_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slurm = slurm_profile(monkeypatch, "0")
    local = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert slurm["set-threads"] == local["set-threads"]
    for rule, resources in slurm["set-resources"].items():
        if "cpus_per_task" in resources:
            assert resources["cpus_per_task"] == slurm["set-threads"].get(rule, 1), rule
    # Every rule with a local memory or runtime request has a SLURM one too.
    assert set(local["set-resources"]) <= set(slurm["set-resources"])
