"""Entry point: safely unpack a downloaded dataset archive into resources/<dataset>/data."""

from leukbench.archives import safe_extract
from leukbench.smk import logged

with logged(snakemake.log[0]) as log:
    members = safe_extract(
        snakemake.input.archive,
        snakemake.output.data,
        max_total_bytes=snakemake.params.max_unpacked_bytes,
    )
    log.info("extracted %d files into %s", len(members), snakemake.output.data)
