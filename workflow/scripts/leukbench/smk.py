"""Glue for Snakemake entry-point scripts: logging into the rule's log file, TSV conventions."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def logged(log_path: str | Path) -> Iterator[logging.Logger]:
    """Send logging and warnings to the rule's log; a failure is logged with its traceback."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler, logging.StreamHandler(sys.stderr)]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logger = logging.getLogger("leukbench")
    try:
        yield logger
    except Exception:
        logger.exception("rule failed")
        raise
    finally:
        handler.flush()


def read_tsv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Empty cells stay empty strings (e.g. no group id); only 'NaN' means a missing number."""
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["NaN"], **kwargs)


def write_tsv(table: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="NaN")


def write_json(data: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
