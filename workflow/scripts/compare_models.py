"""Entry point: paired tests between every two models of a task on the same test images."""

from leukbench.smk import logged, read_tsv, write_tsv
from leukbench.stats import pairwise_comparisons

with logged(snakemake.log[0]):
    params = snakemake.params
    predictions = {
        name: read_tsv(path)
        for name, path in zip(params.names, snakemake.input.predictions, strict=True)
    }
    table = pairwise_comparisons(
        predictions,
        params.cost_matrix,
        params.classes,
        alpha=params.alpha,
        n_resamples=params.resamples,
        level=params.level,
        seed=params.seed,
    )
    write_tsv(table, snakemake.output.table)
