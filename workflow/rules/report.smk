# Each task's section is built on its own, so a config edit that touches one task (or one model)
# rebuilds only that section; the run report stitches the sections together.


rule report_section:
    input:
        metrics=lambda wc: model_results(wc.task, "metrics.json"),
        table="results/{dataset}/{task}/metrics.tsv",
        manifest="results/{dataset}/manifest.tsv",
        rejected="results/{dataset}/rejected.tsv",
        pairs="results/{dataset}/duplicates/pairs.tsv",
        clusters="results/{dataset}/duplicates/clusters.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
        excluded="results/{dataset}/{task}/excluded.tsv",
        segmentation=lambda wc: segmentation_outputs(wc.dataset, "stats.tsv"),
        qc=lambda wc: segmentation_outputs(wc.dataset, "qc.png"),
        histories=lambda wc: model_results(wc.task, "history.tsv", DEEP_MODELS),
    output:
        section="results/{dataset}/{task}/report_section.html",
    params:
        task=lambda wc: task_report_params(wc.task),
    log:
        "logs/{dataset}/{task}/report_section.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/report_section.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report_section.py"


rule task_report:
    input:
        sections=lambda wc: [f"{task_dir(wc.task)}/report_section.html"],
    output:
        html="reports/{task}.html",
    params:
        title=lambda wc: task_config(wc.task).get("title", wc.task),
        config=None,
        # Read when the page is built, never an input: a new run must not rebuild the report.
        provenance=f"{PROVENANCE_DIR}/latest.json",
    log:
        "logs/reports/{task}.log",
    benchmark:
        "logs/benchmarks/reports/{task}.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report.py"


rule report:
    input:
        sections=[f"{task_dir(t)}/report_section.html" for t in TASKS],
    output:
        html="reports/report.html",
    params:
        title="leukbench: every task",
        # The run report prints the exact configuration, so any config edit refreshes it.
        config=config,
        provenance=f"{PROVENANCE_DIR}/latest.json",
    log:
        "logs/reports/report.log",
    benchmark:
        "logs/benchmarks/reports/report.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report.py"
