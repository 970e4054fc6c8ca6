"""Entry point: the Markdown model card of one trained model."""

from pathlib import Path

import pandas as pd

from leukbench.modelcard import render_model_card
from leukbench.smk import logged, read_json, read_tsv

with logged(snakemake.log[0]):
    params, wildcards = snakemake.params, snakemake.wildcards
    metrics = read_json(snakemake.input.metrics)
    info = read_json(snakemake.input.info)
    calibration = dict(metrics["calibration"])
    calibration |= calibration.pop("temperature", {})
    card = render_model_card(
        wildcards.model,
        params.model,
        dataset=f"{wildcards.dataset} ({params.task_title})",
        variant=wildcards.variant,
        classes=params.classes,
        splits=read_tsv(snakemake.input.splits),
        metrics=pd.DataFrame(metrics["ci"]),
        calibration=calibration,
        limitations=params.limitations,
        info={
            k: info[k]
            for k in ("train_seconds", "best_epoch", "epochs_run", "params", "best_params")
            if k in info
        },
        ci_level=metrics["ci_level"],
        ci_method=f"percentile bootstrap, {metrics['bootstrap_resamples']} test-set resamples",
    )
    Path(snakemake.output.card).write_text(card)
