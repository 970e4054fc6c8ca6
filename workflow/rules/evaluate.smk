rule evaluate:
    input:
        predictions="results/{dataset}/{variant}/{model}/predictions.tsv",
        info="results/{dataset}/{variant}/{model}/train_info.json",
    output:
        metrics="results/{dataset}/{variant}/{model}/metrics.json",
        tidy="results/{dataset}/{variant}/{model}/metrics.tsv",
    params:
        classes=lambda wc: classes(wc.dataset),
        cost_matrix=lambda wc: dataset_config(wc.dataset)["cost_matrix"],
    log:
        "logs/{dataset}/{variant}/{model}/evaluate.log",
    benchmark:
        "logs/benchmarks/{dataset}/{variant}/{model}/evaluate.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/evaluate.py"


rule metrics_table:
    input:
        tidy=lambda wc: model_results(wc.dataset, "metrics.tsv"),
    output:
        table="results/{dataset}/metrics.tsv",
    log:
        "logs/{dataset}/metrics_table.log",
    benchmark:
        "logs/benchmarks/{dataset}/metrics_table.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/metrics_table.py"
