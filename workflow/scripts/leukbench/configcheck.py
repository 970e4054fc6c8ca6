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
        k = len(dataset["classes"])
        cost = dataset["cost_matrix"]
        if len(cost) != k or any(len(row) != k for row in cost):
            messages.append(
                f"{key}.cost_matrix: must be {k}x{k}, one row and column per class "
                f"{dataset['classes']}, got rows of lengths {[len(r) for r in cost]}"
            )
        elif np.any(np.diag(np.asarray(cost, dtype=float)) != 0):
            messages.append(f"{key}.cost_matrix: the diagonal (correct predictions) must be 0")
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
    return messages


def check_config(config: dict[str, Any], schema_path: Path, base_dir: Path) -> None:
    """Raise ConfigError listing every problem, schema problems first."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    messages = schema_errors(config, schema)
    if not messages:
        messages = semantic_errors(config, Path(base_dir))
    if messages:
        raise ConfigError("invalid config:\n  " + "\n  ".join(messages))
