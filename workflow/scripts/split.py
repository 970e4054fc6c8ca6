"""Entry point: a task's fixed, seeded train/val/test split, shared by every model and variant."""

from leukbench.smk import logged, read_tsv, write_tsv
from leukbench.steps import build_splits

with logged(snakemake.log[0]):
    params = snakemake.params
    splits, excluded = build_splits(
        read_tsv(snakemake.input.manifest),
        read_tsv(snakemake.input.clusters),
        params.split,
        collapse=params.collapse,
    )
    write_tsv(splits, snakemake.output.splits)
    write_tsv(excluded, snakemake.output.excluded)
