"""Dry-run the workflow through Snakemake's Python API and print the planned jobs as JSON.

Run as a script (`python dryrun_api.py SNAKEFILE WORKDIR CONFIGFILE TARGET`), in its own process
because the API changes the working directory and global state.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.executors import dryrun
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings


def planned(snakefile: Path, workdir: Path, configfile: Path, target: str) -> dict[str, int]:
    seen: Counter[str] = Counter()
    original = dryrun.Executor.run_job

    def record(self, job):  # the dry-run executor "runs" exactly the jobs that need to run
        for single in getattr(job, "jobs", [job]):
            seen[single.rule.name] += 1
        return original(self, job)

    dryrun.Executor.run_job = record
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=snakefile,
            workdir=workdir,
        )
        workflow.dag(dag_settings=DAGSettings(targets={target})).execute_workflow(executor="dryrun")
    return dict(seen)


if __name__ == "__main__":
    snakefile, workdir, configfile, target = sys.argv[1:5]
    print(json.dumps(planned(Path(snakefile), Path(workdir), Path(configfile), target)))
