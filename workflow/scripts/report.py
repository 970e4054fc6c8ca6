"""Entry point: the self-contained HTML report of one dataset."""

from pathlib import Path

from leukbench.report import ReportInputs, render_report
from leukbench.smk import logged

with logged(snakemake.log[0]):
    inputs = snakemake.input
    html = render_report(
        ReportInputs(
            dataset=snakemake.params.dataset,
            config=snakemake.params.config,
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
    Path(snakemake.output.html).parent.mkdir(parents=True, exist_ok=True)
    Path(snakemake.output.html).write_text(html)
