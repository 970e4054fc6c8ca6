"""Entry point: convert one dataset folder into its canonical manifest and rejected list."""

from leukbench.ingest import ingest
from leukbench.smk import logged, write_tsv

with logged(snakemake.log[0]):
    dataset = snakemake.params.dataset
    manifest, rejected = ingest(
        dataset["name"],
        dataset["root"],
        dataset["variants"],
        dataset["classes"],
        dataset["group_regex"],
        n_jobs=snakemake.threads,
        flat=dataset["flat"],
        groups_csv=dataset["groups_csv"],
        class_roots=dataset["class_roots"],
    )
    write_tsv(manifest, snakemake.output.manifest)
    write_tsv(rejected, snakemake.output.rejected)
