"""Entry point: run the EDA notebook for one dataset with papermill, keep the executed notebook
and export it to a self-contained HTML page."""

import os

from leukbench.eda import export_html, run_notebook
from leukbench.smk import logged

with logged(snakemake.log[0]) as log:
    inputs, params = snakemake.input, snakemake.params
    parameters = {
        "dataset": snakemake.wildcards.dataset,
        "title": params.title,
        "manifest": inputs.manifest,
        "rejected": inputs.rejected,
        "pairs": inputs.pairs,
        "clusters": inputs.clusters,
        "segmentation_stats": list(inputs.stats),
        "qc_images": list(inputs.qc),
        "classes": list(params.classes),
        "sample_per_class": params.sample_per_class,
        "colour_per_class": params.colour_per_class,
        "seed": params.seed,
        "figures_dir": snakemake.output.figures,
    }
    log.info("running %s with %s", inputs.notebook, parameters)
    # Paths are relative to the workflow's working directory, which the kernel starts in.
    run_notebook(inputs.notebook, snakemake.output.notebook, parameters, cwd=os.getcwd())
    export_html(snakemake.output.notebook, snakemake.output.html, f"EDA: {params.title}")
    log.info("wrote %s", snakemake.output.html)
