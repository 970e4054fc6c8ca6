"""Entry point: original | mask | segmented grid, a few images per class."""

from leukbench.qc import segmentation_grid
from leukbench.smk import logged, read_tsv

with logged(snakemake.log[0]):
    manifest = read_tsv(snakemake.input.manifest)
    figure = segmentation_grid(
        manifest[manifest["variant"] == snakemake.wildcards.variant],
        read_tsv(snakemake.input.stats),
        snakemake.input.masks,
        snakemake.input.segmented,
        snakemake.params.per_class,
        snakemake.params.seed,
    )
    figure.savefig(snakemake.output.grid, dpi=80)
