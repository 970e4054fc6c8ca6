"""Entry point: one HTML page from task sections (a task's page, or the whole run's report)."""

from pathlib import Path

from leukbench.provenance import read_provenance
from leukbench.report import render_page
from leukbench.smk import logged

with logged(snakemake.log[0]):
    sections = [Path(path).read_text() for path in snakemake.input.sections]
    params = snakemake.params
    html = render_page(params.title, sections, params.config, read_provenance(params.provenance))
    Path(snakemake.output.html).parent.mkdir(parents=True, exist_ok=True)
    Path(snakemake.output.html).write_text(html)
