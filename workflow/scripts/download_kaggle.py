"""Entry point: download a Kaggle dataset archive (resumable, retried, verified when pinned)."""

import dataclasses
import os
from pathlib import Path

from leukbench.smk import logged
from leukbench.sources import fetch, kaggle_dataset_files

with logged(snakemake.log[0]):
    kaggle = snakemake.params.kaggle
    output = Path(snakemake.output.archive)
    (entry,) = kaggle_dataset_files(
        kaggle["slug"], base_url=kaggle["base_url"], size=kaggle["size"], sha256=kaggle["sha256"]
    )
    entry = dataclasses.replace(entry, filename=output.name)
    # The progress bar goes to the log; credentials never do (leukbench.download redacts them).
    fetch(entry, output.parent, progress=os.environ.get("LEUKBENCH_PROGRESS", "1") == "1")
