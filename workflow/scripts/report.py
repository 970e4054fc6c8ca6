"""Entry point: one HTML page from task sections (a task's page, or the whole run's report)."""

from pathlib import Path

from leukbench.report import render_page
from leukbench.smk import logged

with logged(snakemake.log[0]):
    sections = [Path(path).read_text() for path in snakemake.input.sections]
    html = render_page(snakemake.params.title, sections, snakemake.params.config)
    Path(snakemake.output.html).parent.mkdir(parents=True, exist_ok=True)
    Path(snakemake.output.html).write_text(html)
