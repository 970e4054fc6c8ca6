"""Task definitions: label mapping, and the leakage-check twin every task gets."""

from __future__ import annotations

from typing import Any

TWIN_SEPARATOR = "__"


def has_group_ids(dataset: dict[str, Any]) -> bool:
    return bool(dataset.get("group_regex") or dataset.get("groups_csv"))


def resolved_protocol(task: dict[str, Any], dataset: dict[str, Any]) -> str:
    """The protocol a task's split will use, as far as the config tells: group, image or proxy."""
    protocol = task.get("protocol", "auto")
    if protocol == "auto":
        return "group" if has_group_ids(dataset) else "image"
    return protocol


def leakage_twins(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For every task, the same task split the other way, to measure what the protocol changes.

    A patient-disjoint task gets an image-level twin (how much do image-level splits flatter the
    models?); an image-level task, whose dataset has no patient ids, gets a proxy-group twin
    split by colour clusters. Twins share everything else, so the gap is the optimism estimate.
    """
    leakage = config.get("leakage", {})
    if not leakage.get("check", True):
        return {}
    twins = {}
    for name, task in config["tasks"].items():
        own = resolved_protocol(task, config["datasets"][task["dataset"]])
        if own == "proxy":
            continue
        protocol = "image" if own == "group" else "proxy"
        twin = {k: v for k, v in task.items() if k not in ("published", "title")}
        twin |= {"protocol": protocol, "twin_of": name}
        if leakage.get("models"):
            models = task.get("models") or list(config["models"])
            twin["models"] = [m for m in models if m in leakage["models"]]
        twins[f"{name}{TWIN_SEPARATOR}{protocol}"] = twin
    return twins
