"""Entry point: duplicates across splits, and each model's metrics under the twin protocol."""

import pandas as pd

from leukbench.leakage import cross_split_duplicates, optimism_table
from leukbench.smk import logged, read_tsv, write_tsv

with logged(snakemake.log[0]):
    crossing = cross_split_duplicates(
        read_tsv(snakemake.input.pairs), read_tsv(snakemake.input.splits)
    )
    write_tsv(crossing.pairs, snakemake.output.cross_split)
    main = pd.concat([read_tsv(p) for p in snakemake.input.metrics], ignore_index=True)
    twin = pd.concat([read_tsv(p) for p in snakemake.input.twin_metrics], ignore_index=True)
    rows = []
    for metric in ("accuracy", "f1_macro", "average_cost"):
        table = optimism_table(main, twin, metric=metric, keys=["variant", "model"])
        rows.append(table.assign(metric=metric))
    table = pd.concat(rows, ignore_index=True).rename(
        columns={"image_level": "reported", "proxy_group": "twin"}
    )
    write_tsv(table.assign(twin_protocol=snakemake.params.twin_protocol), snakemake.output.optimism)
