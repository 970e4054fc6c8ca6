# Exploratory data analysis per dataset: workflow/notebooks/eda.ipynb run with papermill on the
# dataset's manifest, duplicate audit and segmentation QC, kept as an executed notebook and
# exported to one self-contained HTML page.

# The notebook is part of the workflow's source (not of the working directory), and an input,
# so editing it reruns the rule.
EDA_NOTEBOOK = str(Path(workflow.basedir) / "workflow" / "notebooks" / "eda.ipynb")
EDA_SAMPLE_PER_CLASS = 6  # thumbnails per class in the sample grids
EDA_COLOUR_PER_CLASS = 50  # images per class read for the colour statistics


rule eda:
    input:
        notebook=EDA_NOTEBOOK,
        manifest="results/{dataset}/manifest.tsv",
        rejected="results/{dataset}/rejected.tsv",
        pairs="results/{dataset}/duplicates/pairs.tsv",
        clusters="results/{dataset}/duplicates/clusters.tsv",
        stats=lambda wc: segmentation_outputs(wc.dataset, "stats.tsv"),
        qc=lambda wc: segmentation_outputs(wc.dataset, "qc.png"),
    output:
        notebook="results/{dataset}/eda/eda.ipynb",
        html="results/{dataset}/eda/eda.html",
        figures=directory("results/{dataset}/eda/figures"),
    params:
        title=lambda wc: dataset_config(wc.dataset).get("title") or wc.dataset,
        classes=lambda wc: classes(wc.dataset),
        sample_per_class=EDA_SAMPLE_PER_CLASS,
        colour_per_class=EDA_COLOUR_PER_CLASS,
        seed=config["split"]["seed"],
    log:
        "logs/{dataset}/eda.log",
    benchmark:
        "logs/benchmarks/{dataset}/eda.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/eda.py"
