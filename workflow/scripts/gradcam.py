"""Entry point: the Grad-CAM gallery of one deep model on its test images."""

from pathlib import Path

from leukbench.deep.gradcam import gradcam_gallery
from leukbench.smk import logged, read_tsv, write_tsv

with logged(snakemake.log[0]):
    manifest = read_tsv(snakemake.input.manifest)
    images = manifest[manifest["variant"] == snakemake.wildcards.variant][["id", "path"]]
    selection = gradcam_gallery(
        Path(snakemake.input.model).parent,
        snakemake.input.predictions,
        images,
        snakemake.output.gallery,
        per_class=snakemake.params.per_class,
        seed=snakemake.params.seed,
    )
    write_tsv(selection, snakemake.output.selection)
