"""Entry point: HSV segmentation of every image of one dataset variant."""

from leukbench.smk import logged, read_tsv, write_tsv
from leukbench.steps import run_segmentation

with logged(snakemake.log[0]):
    manifest = read_tsv(snakemake.input.manifest)
    stats = run_segmentation(
        manifest[manifest["variant"] == snakemake.wildcards.variant],
        snakemake.params.segmentation,
        snakemake.params.image_size,
        snakemake.output.masks,
        snakemake.output.segmented,
        n_jobs=snakemake.threads,
    )
    write_tsv(stats, snakemake.output.stats)
