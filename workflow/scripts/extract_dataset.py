"""Entry point: safely unpack a dataset's downloaded archives into resources/<dataset>/data."""

from pathlib import Path

from leukbench.archives import extract_all
from leukbench.smk import logged, read_json

with logged(snakemake.log[0]) as log:
    source = Path(snakemake.input.archive)
    if source.suffix == ".json":  # a listing of several downloads (TCIA)
        archives = [source.parent / f["filename"] for f in read_json(source)["files"]]
    else:
        archives = [source]
    members = extract_all(
        archives, snakemake.output.data, max_total_bytes=snakemake.params.max_unpacked_bytes
    )
    log.info("extracted %d files into %s", len(members), snakemake.output.data)
