"""Entry point: a classic model refitted on one re-split of its task."""

from leukbench.provenance import job_provenance
from leukbench.repeats import resplit_classic
from leukbench.smk import logged, read_tsv, write_json, write_tsv

with logged(snakemake.log[0]):
    params = snakemake.params
    predictions, info = resplit_classic(
        read_tsv(snakemake.input.features),
        read_tsv(snakemake.input.splits),
        params.classes,
        params.model,
        params.ratios,
        int(snakemake.wildcards.split_seed),
        params.seed,
        n_jobs=snakemake.threads,
    )
    write_tsv(predictions, snakemake.output.predictions)
    write_json({**info, "provenance": job_provenance()}, snakemake.output.info)
