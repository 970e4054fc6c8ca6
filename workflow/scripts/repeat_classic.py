"""Entry point: a classic model refitted on re-splits of its task with other seeds."""

from leukbench.repeats import repeated_metrics
from leukbench.smk import logged, read_tsv, write_tsv

with logged(snakemake.log[0]):
    params = snakemake.params
    table = repeated_metrics(
        read_tsv(snakemake.input.features),
        read_tsv(snakemake.input.splits),
        params.classes,
        params.model,
        params.cost_matrix,
        params.ratios,
        params.split_seeds,
        params.seed,
    )
    write_tsv(table, snakemake.output.table)
