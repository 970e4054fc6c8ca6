"""Entry point: the shared evaluator, applied to one model's predictions."""

import pandas as pd

from leukbench.metrics import evaluate, tidy
from leukbench.smk import logged, read_json, read_tsv, write_json, write_tsv

with logged(snakemake.log[0]):
    wildcards = snakemake.wildcards
    info = read_json(snakemake.input.info)
    metrics = evaluate(
        read_tsv(snakemake.input.predictions),
        snakemake.params.classes,
        snakemake.params.cost_matrix,
    )
    keys = {
        "dataset": wildcards.dataset,
        "task": wildcards.task,
        "variant": wildcards.variant,
        "model": wildcards.model,
    }
    write_json(
        {
            **keys,
            "classes": snakemake.params.classes,
            "splits": metrics,
            "train_seconds": info.get("train_seconds"),
            "unpredicted": info.get("unpredicted", []),
        },
        snakemake.output.metrics,
    )
    table = tidy(metrics, **keys)
    if info.get("train_seconds") is not None:
        timing = {
            **keys,
            "split": "train",
            "metric": "train_seconds",
            "value": info["train_seconds"],
        }
        table = pd.concat([table, pd.DataFrame([timing])], ignore_index=True)
    write_tsv(table, snakemake.output.tidy)
