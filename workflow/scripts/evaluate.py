"""Entry point: the shared evaluator, applied to one model's predictions."""

import pandas as pd

from leukbench.evaluation import evaluate_uncertainty
from leukbench.metrics import evaluate, tidy
from leukbench.smk import logged, read_json, read_tsv, write_json, write_tsv

with logged(snakemake.log[0]):
    wildcards = snakemake.wildcards
    info = read_json(snakemake.input.info)
    predictions = read_tsv(snakemake.input.predictions)
    params = snakemake.params
    metrics = evaluate(predictions, params.classes, params.cost_matrix)
    uncertainty = evaluate_uncertainty(
        predictions,
        params.classes,
        params.cost_matrix,
        params.evaluation,
        params.seed,
        snakemake.output.figures,
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
            **uncertainty,
        },
        snakemake.output.metrics,
    )
    table = tidy(metrics, **keys)
    columns = ["split", "metric", "ci_low", "ci_high"]
    ci = pd.DataFrame(uncertainty.get("ci", []), columns=columns[1:]).assign(split="test")
    table = table.merge(ci[columns], on=["split", "metric"], how="left")
    if info.get("train_seconds") is not None:
        timing = {
            **keys,
            "split": "train",
            "metric": "train_seconds",
            "value": info["train_seconds"],
        }
        table = pd.concat([table, pd.DataFrame([timing])], ignore_index=True)
    write_tsv(table, snakemake.output.tidy)
