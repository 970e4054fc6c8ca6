"""Entry point: a deep model retrained on one re-split of its task."""

from leukbench.deep.repeats import resplit_deep
from leukbench.provenance import job_provenance
from leukbench.smk import logged, read_tsv, write_json, write_tsv

with logged(snakemake.log[0]):
    params = snakemake.params
    manifest = read_tsv(snakemake.input.manifest)
    predictions, info = resplit_deep(
        manifest[manifest["variant"] == snakemake.wildcards.variant],
        read_tsv(snakemake.input.splits),
        params.classes,
        params.model,
        params.ratios,
        int(snakemake.wildcards.split_seed),
        params.seed,
        cache_path=snakemake.input.cache or None,
        threads=snakemake.threads,
    )
    write_tsv(predictions, snakemake.output.predictions)
    write_json({**info, "provenance": job_provenance()}, snakemake.output.info)
