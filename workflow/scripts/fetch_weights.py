"""Entry point: fetch one Keras ImageNet weights file into the weights cache, verified."""

from pathlib import Path

from leukbench.download import download
from leukbench.smk import logged

with logged(snakemake.log[0]):
    source = snakemake.params.source
    download(
        source["url"],
        Path(snakemake.output.weights),
        sha256=source.get("sha256"),
        md5=source.get("md5"),
        progress=False,
    )
