rule split:
    input:
        manifest="results/{dataset}/manifest.tsv",
        clusters="results/{dataset}/duplicates/clusters.tsv",
    output:
        splits="results/{dataset}/splits.tsv",
        excluded="results/{dataset}/excluded.tsv",
    params:
        classes=lambda wc: classes(wc.dataset),
        collapse=config["duplicates"]["collapse"],
        split=config["split"],
    log:
        "logs/{dataset}/split.log",
    benchmark:
        "logs/benchmarks/{dataset}/split.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/split.py"
