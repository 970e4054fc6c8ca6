rule features:
    input:
        manifest="results/{dataset}/manifest.tsv",
        splits="results/{dataset}/splits.tsv",
        masks="results/{dataset}/{variant}/segmentation/masks",
    output:
        features="results/{dataset}/{variant}/features.tsv",
    params:
        features=config["features"],
    log:
        "logs/{dataset}/{variant}/features.log",
    benchmark:
        "logs/benchmarks/{dataset}/{variant}/features.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/features.py"
