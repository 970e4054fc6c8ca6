"""Config checks with messages that name the offending key, run before any job starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml


class ConfigError(ValueError):
    """Invalid configuration; the message names every offending key."""


def key_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<config root>"


def schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            listed = re.search(r"\((.+?) (?:was|were) unexpected\)", error.message)
            names = re.findall(r"'([^']+)'", listed.group(1)) if listed else []
            if names:
                messages.extend(f"{key_path([*error.path, n])}: unknown key" for n in names)
                continue
        messages.append(f"{key_path(error.path)}: {error.message}")
    return messages


def semantic_errors(config: dict[str, Any], base_dir: Path) -> list[str]:
    """What a JSON schema cannot say: paths that exist and matrices that fit the classes."""
    messages = []
    for name, dataset in config.get("datasets", {}).items():
        key = f"datasets.{name}"
        source = dataset.get("source", "local")
        if source in ("local", "folder"):
            path = Path(dataset["path"])
            path = path if path.is_absolute() else base_dir / path
            if not path.is_dir():
                messages.append(
                    f"{key}.path: data folder '{dataset['path']}' does not exist "
                    f"(resolved to {path}); point it at the dataset folder"
                )
        if source == "folder" and len(dataset.get("variants", ["images"])) != 1:
            messages.append(f"{key}.variants: a folder dataset has exactly one variant")
        audit_variant = config.get("duplicates", {}).get("variant")
        if audit_variant is not None and audit_variant not in dataset.get("variants", ["images"]):
            messages.append(
                f"duplicates.variant: '{audit_variant}' is not a variant of "
                f"{key} (variants: {dataset.get('variants', ['images'])})"
            )
    hue = config.get("segmentation", {}).get("hue")
    if hue is not None and hue[0] == hue[1]:
        messages.append("segmentation.hue: the range is empty (min equals max)")
    split = config.get("split", {})
    if split.get("n_per_class") is not None and split.get("n_total") is not None:
        messages.append("split: set n_per_class or n_total, not both")
    for name, task in config.get("tasks", {}).items():
        messages.extend(task_errors(name, task, config))
    for section, field in (("leakage", "models"), ("evaluation", "repeat_models")):
        chosen = config.get(section, {}).get(field) or []
        messages.extend(unknown_models(f"{section}.{field}", chosen, config))
    messages.extend(name_clashes(config))
    return messages


def unknown_models(key: str, chosen: list[str], config: dict[str, Any]) -> list[str]:
    known = config.get("models", {})
    unknown = [m for m in chosen if m not in known]
    return [f"{key}: unknown model(s) {unknown} (models: {sorted(known)})"] if unknown else []


def task_classes(task: dict[str, Any], dataset: dict[str, Any]) -> dict[str, list[str]]:
    """Task label -> dataset labels; the identity mapping when the task gives none."""
    return task.get("classes") or {c: [c] for c in dataset["classes"]}


def task_errors(name: str, task: dict[str, Any], config: dict[str, Any]) -> list[str]:
    key = f"tasks.{name}"
    datasets = config.get("datasets", {})
    if task["dataset"] not in datasets:
        return [
            f"{key}.dataset: unknown dataset '{task['dataset']}' (datasets: {sorted(datasets)})"
        ]
    dataset = datasets[task["dataset"]]
    messages = []
    mapping = task_classes(task, dataset)
    seen: dict[str, str] = {}
    for label, sources in mapping.items():
        for source in sources:
            if source not in dataset["classes"]:
                messages.append(
                    f"{key}.classes.{label}: '{source}' is not a class of dataset "
                    f"'{task['dataset']}' (classes: {dataset['classes']})"
                )
            elif source in seen:
                messages.append(
                    f"{key}.classes.{label}: '{source}' is already mapped to '{seen[source]}'"
                )
            seen[source] = label
    k = len(mapping)
    cost = task.get("cost_matrix")
    if cost is not None:
        if len(cost) != k or any(len(row) != k for row in cost):
            messages.append(
                f"{key}.cost_matrix: must be {k}x{k}, one row and column per task class "
                f"{list(mapping)}, got rows of lengths {[len(r) for r in cost]}"
            )
        elif np.any(np.diag(np.asarray(cost, dtype=float)) != 0):
            messages.append(f"{key}.cost_matrix: the diagonal (correct predictions) must be 0")
    messages.extend(unknown_models(f"{key}.models", task.get("models", []), config))
    if task.get("n_per_class") is not None and task.get("n_total") is not None:
        messages.append(f"{key}: set n_per_class or n_total, not both")
    if task.get("protocol") == "group" and not (
        dataset.get("group_regex") or dataset.get("groups_csv")
    ):
        messages.append(
            f"{key}.protocol: 'group' needs patient ids, but dataset '{task['dataset']}' sets "
            "neither group_regex nor groups_csv; use protocol 'image' or give the ids"
        )
    return messages


RESERVED = {"segmentation", "duplicates", "feature_cache", "download", "data", "all", "report"}


def name_clashes(config: dict[str, Any]) -> list[str]:
    """Names double as path segments and target names, so they must not collide."""
    kinds = {
        "datasets": set(config.get("datasets", {})),
        "tasks": set(config.get("tasks", {})),
        "models": set(config.get("models", {})),
        "variants": {v for d in config.get("datasets", {}).values() for v in d.get("variants", [])},
    }
    messages = []
    names = list(kinds)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            for clash in sorted(kinds[first] & kinds[second]):
                messages.append(
                    f"{first}.{clash}: the name '{clash}' is also used in {second}; "
                    "dataset, task, model and variant names must all differ"
                )
        for clash in sorted(kinds[first] & RESERVED):
            messages.append(f"{first}.{clash}: '{clash}' is a reserved name; rename it")
    return messages


def check_config(config: dict[str, Any], schema_path: Path, base_dir: Path) -> None:
    """Raise ConfigError listing every problem, schema problems first."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    messages = schema_errors(config, schema)
    if not messages:
        messages = semantic_errors(config, Path(base_dir))
    if messages:
        raise ConfigError("invalid config:\n  " + "\n  ".join(messages))
