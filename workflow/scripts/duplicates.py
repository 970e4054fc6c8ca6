"""Entry point: exact and near duplicate audit of one dataset."""

from leukbench.duplicates import cluster_duplicates, find_duplicates
from leukbench.smk import logged, read_tsv, write_tsv

with logged(snakemake.log[0]) as log:
    manifest = read_tsv(snakemake.input.manifest)
    images = manifest[manifest["variant"] == snakemake.params.variant]
    pairs = find_duplicates(images, snakemake.params.max_distance, n_jobs=snakemake.threads)
    clusters = cluster_duplicates(images, pairs)
    log.info(
        "%d exact and %d near duplicate pairs; %d images in clusters of 2 or more",
        (pairs["kind"] == "exact").sum(),
        (pairs["kind"] == "near").sum(),
        (clusters["cluster_size"] > 1).sum(),
    )
    write_tsv(pairs, snakemake.output.pairs)
    write_tsv(clusters, snakemake.output.clusters)
