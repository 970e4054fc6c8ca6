"""Entry point: one tidy metrics table across every model and variant of a dataset."""

import pandas as pd

from leukbench.smk import logged, read_tsv, write_tsv

with logged(snakemake.log[0]):
    write_tsv(
        pd.concat([read_tsv(p) for p in snakemake.input.tidy], ignore_index=True),
        snakemake.output.table,
    )
