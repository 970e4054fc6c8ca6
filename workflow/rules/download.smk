# Remote sources are fetched by local rules (cluster compute nodes never download), never at
# parse time; `snakemake -n` only plans them.


rule download_kaggle:
    output:
        archive="resources/{dataset}/download/archive.zip",
    params:
        kaggle=lambda wc: dataset_config(wc.dataset)["kaggle"],
    log:
        "logs/{dataset}/download.log",
    benchmark:
        "logs/benchmarks/{dataset}/download.tsv"
    conda:
        "../../envs/data.yaml"
    localrule: True
    retries: 3
    script:
        "../scripts/download_kaggle.py"


rule extract_dataset:
    input:
        archive="resources/{dataset}/download/archive.zip",
    output:
        data=directory("resources/{dataset}/data"),
    params:
        max_unpacked_bytes=lambda wc: dataset_config(wc.dataset)["kaggle"]["max_unpacked_bytes"],
    log:
        "logs/{dataset}/extract.log",
    benchmark:
        "logs/benchmarks/{dataset}/extract.tsv"
    conda:
        "../../envs/data.yaml"
    localrule: True
    script:
        "../scripts/extract_dataset.py"
