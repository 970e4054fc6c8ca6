# leukbench: benchmark of leukemia blood-smear image classifiers.
# Typical use: snakemake --cores 8 --use-conda all   (see README.md)

import hashlib
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The importable library lives beside the entry-point scripts; the parser needs it too.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))


configfile: "config/config.yaml"


# `snakemake --report report.html` collects the outputs registered with report() (reports,
# Grad-CAM galleries, feature importance, segmentation QC) under this description.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/duplicates.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/classic.smk"
include: "workflow/rules/deep.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/eda.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/targets.smk"


# Provenance of each real run (not of dry runs): the report shows the run that built it.
onstart:
    from leukbench.provenance import write_run_provenance

    write_run_provenance(config, sys.argv, workflow.basedir, PROVENANCE_DIR)
