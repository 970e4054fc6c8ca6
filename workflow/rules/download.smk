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


rule download_tcia:
    output:
        listing="resources/{dataset}/download/tcia.json",
    params:
        tcia=lambda wc: dataset_config(wc.dataset)["tcia"],
    log:
        "logs/{dataset}/download.log",
    benchmark:
        "logs/benchmarks/{dataset}/download.tsv"
    conda:
        "../../envs/data.yaml"
    localrule: True
    retries: 3
    script:
        "../scripts/download_tcia.py"


rule extract_dataset:
    input:
        archive=downloaded_archives,
    output:
        data=directory("resources/{dataset}/data"),
    params:
        max_unpacked_bytes=lambda wc: (
            dataset_config(wc.dataset)[dataset_config(wc.dataset)["source"]]["max_unpacked_bytes"]
        ),
    log:
        "logs/{dataset}/extract.log",
    benchmark:
        "logs/benchmarks/{dataset}/extract.tsv"
    conda:
        "../../envs/data.yaml"
    localrule: True
    script:
        "../scripts/extract_dataset.py"
