"""Entry point: backbone features of every split image in all its training views, once.

Every image gets the views a training image needs, not only the train split's, so the repeated
evaluation's re-splits (rule repeat_deep) train on this same cache.
"""

from leukbench.deep.cache import compute_feature_cache
from leukbench.smk import logged, read_tsv

with logged(snakemake.log[0]):
    manifest = read_tsv(snakemake.input.manifest)
    splits = read_tsv(snakemake.input.splits)
    images = manifest[manifest["variant"] == snakemake.wildcards.variant].merge(
        splits[["id", "split"]], on="id"
    )
    compute_feature_cache(
        images,
        snakemake.params.spec,
        snakemake.params.seed,
        snakemake.output.cache,
        threads=snakemake.threads,
        every_view=True,
    )
