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
        evaluations=lambda wc: model_results(wc.task, "evaluation"),
        comparisons="results/{dataset}/{task}/comparisons.tsv",
        repeats=lambda wc: repeat_results(wc.task),
        leakage=lambda wc: (
            [f"{task_dir(wc.task)}/leakage/{n}.tsv" for n in ("optimism", "cross_split_duplicates")]
            if task_twin(wc.task)
            else []
        ),
        cards=lambda wc: model_results(wc.task, "model_card.md"),
        gradcams=lambda wc: model_results(wc.task, "gradcam.png", DEEP_MODELS),
        importances=lambda wc: model_results(wc.task, "importance.png", XGBOOST_MODELS),
        eda="results/{dataset}/eda/eda.html",
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
        html=report(
            "reports/{task}.html",
            caption="../report/task_report.rst",
            category="Reports",
            labels={"page": "{task}"},
        ),
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
        html=report(
            "reports/report.html",
            caption="../report/run_report.rst",
            category="Reports",
            labels={"page": "every task"},
        ),
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
