localrules:
    all,
    metrics_table,
    segmentation_qc,
    report,


rule all:
    input:
        expand("reports/{dataset}/report.html", dataset=DATASETS),
    default_target: True


# One target per dataset (its report) and one per model (its metrics on every dataset and
# variant), so `snakemake svm` rebuilds that model and nothing else.
for _dataset in DATASETS:

    rule:
        name:
            _dataset
        input:
            f"reports/{_dataset}/report.html",
        localrule: True


for _model in MODELS:

    rule:
        name:
            _model
        input:
            [path for d in DATASETS for path in model_results(d, "metrics.json", [_model])],
        localrule: True
