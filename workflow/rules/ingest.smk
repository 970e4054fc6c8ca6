rule ingest:
    input:
        data=lambda wc: dataset_config(wc.dataset)["path"],
    output:
        manifest="results/{dataset}/manifest.tsv",
        rejected="results/{dataset}/rejected.tsv",
    params:
        dataset=lambda wc: {
            "name": wc.dataset,
            "variants": variants(wc.dataset),
            "classes": classes(wc.dataset),
            "group_regex": dataset_config(wc.dataset)["group_regex"],
        },
    log:
        "logs/{dataset}/ingest.log",
    benchmark:
        "logs/benchmarks/{dataset}/ingest.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/ingest.py"
