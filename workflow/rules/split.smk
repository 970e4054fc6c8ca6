rule split:
    input:
        manifest="results/{dataset}/manifest.tsv",
        clusters="results/{dataset}/duplicates/clusters.tsv",
    output:
        splits="results/{dataset}/{task}/splits.tsv",
        excluded="results/{dataset}/{task}/excluded.tsv",
    params:
        collapse=config["duplicates"]["collapse"],
        split=lambda wc: task_split(wc.task),
    log:
        "logs/{dataset}/{task}/split.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/split.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/split.py"
