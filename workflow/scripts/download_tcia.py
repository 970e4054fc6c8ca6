"""Entry point: download a TCIA collection's archives (resolved via tcia-utils or a manifest)."""

import os
from pathlib import Path

from leukbench.download import hash_file, redact_url
from leukbench.smk import logged, write_json
from leukbench.sources import fetch, tcia_collection_files, tcia_manifest_files

with logged(snakemake.log[0]) as log:
    tcia = snakemake.params.tcia
    if tcia["manifest"]:
        entries = tcia_manifest_files(tcia["manifest"], tcia["collection"])
    else:
        entries = tcia_collection_files(
            tcia["collection"], base_url=tcia["api_base_url"], wanted=tcia["downloads"]
        )
    folder = Path(snakemake.output.listing).parent
    progress = os.environ.get("LEUKBENCH_PROGRESS", "1") == "1"
    files = []
    for entry in entries:
        log.info("fetching %s (%s)", entry.filename, entry.description)
        path = fetch(entry, folder, progress=progress)
        files.append(
            {
                "filename": path.name,
                "url": redact_url(entry.url),
                "description": entry.description,
                "size": path.stat().st_size,
                "sha256": hash_file(path).sha256,
            }
        )
    write_json({"collection": tcia["collection"], "files": files}, snakemake.output.listing)
