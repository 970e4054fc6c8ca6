rule features:
    input:
        manifest="results/{dataset}/manifest.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
        masks="results/{dataset}/{variant}/segmentation/masks",
    output:
        features="results/{dataset}/{task}/{variant}/features.tsv",
    params:
        features=config["features"],
    log:
        "logs/{dataset}/{task}/{variant}/features.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/features.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/features.py"
