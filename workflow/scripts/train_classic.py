"""Entry point: fit one SVM or XGBoost model and predict every split."""

import time

import joblib

from leukbench.classic import train_classic
from leukbench.provenance import job_provenance
from leukbench.smk import logged, read_tsv, write_json, write_tsv

with logged(snakemake.log[0]):
    start = time.perf_counter()
    model, predictions, info = train_classic(
        read_tsv(snakemake.input.features),
        read_tsv(snakemake.input.splits),
        snakemake.params.classes,
        snakemake.params.model,
        snakemake.params.seed,
        n_jobs=snakemake.threads,
    )
    info["train_seconds"] = time.perf_counter() - start
    info["provenance"] = job_provenance()
    joblib.dump({"model": model, "classes": snakemake.params.classes}, snakemake.output.model)
    write_tsv(predictions, snakemake.output.predictions)
    write_json(info, snakemake.output.info)
