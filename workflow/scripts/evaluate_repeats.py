"""Entry point: test metrics of every re-split's predictions, one row per seed and metric."""

from leukbench.repeats import repeat_metrics
from leukbench.smk import logged, read_tsv, write_tsv

with logged(snakemake.log[0]):
    paths = zip(snakemake.params.split_seeds, snakemake.input.predictions, strict=True)
    table = repeat_metrics(
        {seed: read_tsv(path) for seed, path in paths},
        snakemake.params.classes,
        snakemake.params.cost_matrix,
    )
    write_tsv(table, snakemake.output.table)
