"""Entry point: the self-contained HTML section of one task's report."""

from pathlib import Path

from leukbench.report import SectionInputs, render_section
from leukbench.smk import logged

with logged(snakemake.log[0]):
    inputs = snakemake.input
    html = render_section(
        SectionInputs(
            task=snakemake.params.task,
            metrics=list(inputs.metrics),
            manifest=inputs.manifest,
            rejected=inputs.rejected,
            pairs=inputs.pairs,
            clusters=inputs.clusters,
            splits=inputs.splits,
            excluded=inputs.excluded,
            segmentation=list(inputs.segmentation),
            qc=list(inputs.qc),
            histories=list(inputs.histories),
        )
    )
    Path(snakemake.output.section).write_text(html)
