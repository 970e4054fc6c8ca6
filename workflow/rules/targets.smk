localrules:
    all,
    metrics_table,
    segmentation_qc,
    report_section,
    task_report,
    report,


rule all:
    input:
        "reports/report.html",
        expand("reports/{task}.html", task=TASKS),
        expand("results/{dataset}/eda/eda.html", dataset=USED_DATASETS),
    default_target: True


# One target per task (its report), per dataset (the reports of its tasks) and per model (its
# metrics on every task and variant), so `snakemake svm` rebuilds that model and nothing else.
for _task in TASKS:

    rule:
        name:
            _task
        input:
            f"reports/{_task}.html",
        localrule: True


for _dataset in DATASETS:

    rule:
        name:
            _dataset
        input:
            [f"reports/{t}.html" for t in dataset_tasks(_dataset)]
            + [f"results/{_dataset}/eda/eda.html"],
        localrule: True


for _model in MODELS:

    rule:
        name:
            _model
        input:
            [path for t in TASKS for path in model_results(t, "metrics.json", [_model])],
        localrule: True
