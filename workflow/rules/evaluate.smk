rule evaluate:
    input:
        predictions="results/{dataset}/{task}/{variant}/{model}/predictions.tsv",
        info="results/{dataset}/{task}/{variant}/{model}/train_info.json",
    output:
        metrics="results/{dataset}/{task}/{variant}/{model}/metrics.json",
        tidy="results/{dataset}/{task}/{variant}/{model}/metrics.tsv",
        figures=directory("results/{dataset}/{task}/{variant}/{model}/evaluation"),
    params:
        classes=lambda wc: task_class_names(wc.task),
        cost_matrix=lambda wc: task_cost_matrix(wc.task),
        evaluation=EVALUATION_SETTINGS,
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/evaluate.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/evaluate.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/evaluate.py"


rule metrics_table:
    input:
        tidy=lambda wc: model_results(wc.task, "metrics.tsv"),
    output:
        table="results/{dataset}/{task}/metrics.tsv",
    log:
        "logs/{dataset}/{task}/metrics_table.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/metrics_table.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/metrics_table.py"
