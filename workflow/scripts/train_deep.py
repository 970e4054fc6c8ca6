"""Entry point: train one CNN, transfer or hybrid model on the shared split."""

from leukbench.deep.train import train_deep, write_model_sidecar
from leukbench.provenance import job_provenance
from leukbench.smk import logged, read_tsv, write_json, write_tsv

with logged(snakemake.log[0]):
    manifest = read_tsv(snakemake.input.manifest)
    model, predictions, info, history = train_deep(
        manifest[manifest["variant"] == snakemake.wildcards.variant],
        read_tsv(snakemake.input.splits),
        snakemake.params.classes,
        snakemake.params.model,
        snakemake.params.seed,
        cache_path=snakemake.input.cache or None,
        threads=snakemake.threads,
    )
    model.save(snakemake.output.model)
    write_model_sidecar(snakemake.output.model, snakemake.params.classes, snakemake.params.model)
    write_tsv(predictions, snakemake.output.predictions)
    write_tsv(history, snakemake.output.history)
    write_json({**info, "provenance": job_provenance()}, snakemake.output.info)
