"""Entry point: gain importance and TreeSHAP contributions of one XGBoost model."""

from leukbench.explain_classic import write_explanation
from leukbench.smk import logged, read_tsv

with logged(snakemake.log[0]):
    write_explanation(
        snakemake.input.model,
        read_tsv(snakemake.input.features),
        read_tsv(snakemake.input.splits),
        snakemake.output.table,
        snakemake.output.figure,
        top_k=snakemake.params.top_k,
    )
