rule ingest:
    input:
        data=lambda wc: data_folder(wc.dataset),
    output:
        manifest="results/{dataset}/manifest.tsv",
        rejected="results/{dataset}/rejected.tsv",
    params:
        dataset=lambda wc: {
            "name": wc.dataset,
            "variants": variants(wc.dataset),
            "classes": classes(wc.dataset),
            "root": data_root(wc.dataset),
            "flat": dataset_config(wc.dataset)["source"] == "folder"
            or dataset_config(wc.dataset)["layout"] == "flat",
            "class_roots": dataset_config(wc.dataset)["class_roots"],
            "group_regex": dataset_config(wc.dataset)["group_regex"],
            "groups_csv": dataset_config(wc.dataset)["groups_csv"],
        },
    log:
        "logs/{dataset}/ingest.log",
    benchmark:
        "logs/benchmarks/{dataset}/ingest.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/ingest.py"
