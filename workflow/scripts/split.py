"""Entry point: a task's fixed, seeded train/val/test split, shared by every model and variant."""

from leukbench.smk import logged, read_tsv, write_tsv
from leukbench.steps import build_splits, proxy_group_assigner

with logged(snakemake.log[0]):
    params = snakemake.params
    manifest = read_tsv(snakemake.input.manifest)
    proxy = None
    if params.split["protocol"] == "proxy":
        first = manifest[manifest["variant"] == manifest["variant"].iloc[0]]
        proxy = proxy_group_assigner(
            first[["id", "path"]],
            params.split["proxy_groups"],
            params.split["seed"],
            n_jobs=snakemake.threads,
        )
    splits, excluded = build_splits(
        manifest,
        read_tsv(snakemake.input.clusters),
        params.split,
        collapse=params.collapse,
        proxy=proxy,
    )
    write_tsv(splits, snakemake.output.splits)
    write_tsv(excluded, snakemake.output.excluded)
