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
            evaluations=list(inputs.evaluations),
            comparisons=inputs.comparisons,
            repeats=list(inputs.repeats),
            optimism=inputs.leakage[0] if inputs.leakage else None,
            cross_split=inputs.leakage[1] if inputs.leakage else None,
            cards=list(inputs.cards),
            gradcams=list(inputs.gradcams),
            importances=list(inputs.importances),
        )
    )
    Path(snakemake.output.section).write_text(html)
