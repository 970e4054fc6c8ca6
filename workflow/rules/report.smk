rule report:
    input:
        metrics=lambda wc: model_results(wc.dataset, "metrics.json"),
        table="results/{dataset}/metrics.tsv",
        manifest="results/{dataset}/manifest.tsv",
        rejected="results/{dataset}/rejected.tsv",
        pairs="results/{dataset}/duplicates/pairs.tsv",
        clusters="results/{dataset}/duplicates/clusters.tsv",
        splits="results/{dataset}/splits.tsv",
        excluded="results/{dataset}/excluded.tsv",
        segmentation=lambda wc: segmentation_outputs(wc.dataset, "stats.tsv"),
        qc=lambda wc: segmentation_outputs(wc.dataset, "qc.png"),
        histories=lambda wc: model_results(wc.dataset, "history.tsv", DEEP_MODELS),
    output:
        html="reports/{dataset}/report.html",
    params:
        dataset=lambda wc: {"name": wc.dataset, **dataset_config(wc.dataset)},
        # The report prints the exact configuration, so any config edit refreshes it.
        config=config,
    log:
        "logs/{dataset}/report.log",
    benchmark:
        "logs/benchmarks/{dataset}/report.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report.py"
