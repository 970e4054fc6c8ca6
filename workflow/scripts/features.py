"""Entry point: handcrafted features of the split images of one dataset variant."""

from leukbench.smk import logged, read_tsv, write_tsv
from leukbench.steps import compute_features

with logged(snakemake.log[0]):
    manifest = read_tsv(snakemake.input.manifest)
    table = compute_features(
        manifest[manifest["variant"] == snakemake.wildcards.variant],
        read_tsv(snakemake.input.splits),
        snakemake.input.masks,
        snakemake.params.features,
        n_jobs=snakemake.threads,
    )
    write_tsv(table, snakemake.output.features)
