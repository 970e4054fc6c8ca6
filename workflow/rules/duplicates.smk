rule duplicates:
    input:
        manifest="results/{dataset}/manifest.tsv",
    output:
        pairs="results/{dataset}/duplicates/pairs.tsv",
        clusters="results/{dataset}/duplicates/clusters.tsv",
    params:
        variant=lambda wc: audit_variant(wc.dataset),
        max_distance=config["duplicates"]["max_distance"],
    log:
        "logs/{dataset}/duplicates.log",
    benchmark:
        "logs/benchmarks/{dataset}/duplicates.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/duplicates.py"
