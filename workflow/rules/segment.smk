SEGMENTATION_KEYS = ("hue", "saturation_min", "value_min", "opening_radius", "min_object_px",
                     "max_hole_px", "min_foreground")


rule segment:
    input:
        manifest="results/{dataset}/manifest.tsv",
    output:
        masks=directory("results/{dataset}/{variant}/segmentation/masks"),
        segmented=directory("results/{dataset}/{variant}/segmentation/segmented"),
        stats="results/{dataset}/{variant}/segmentation/stats.tsv",
    params:
        segmentation={k: config["segmentation"][k] for k in SEGMENTATION_KEYS},
        image_size=config["image_size"],
    log:
        "logs/{dataset}/{variant}/segment.log",
    benchmark:
        "logs/benchmarks/{dataset}/{variant}/segment.tsv"
    conda:
        "../../envs/imaging.yaml"
    script:
        "../scripts/segment.py"


rule segmentation_qc:
    input:
        stats="results/{dataset}/{variant}/segmentation/stats.tsv",
        manifest="results/{dataset}/manifest.tsv",
        masks="results/{dataset}/{variant}/segmentation/masks",
        segmented="results/{dataset}/{variant}/segmentation/segmented",
    output:
        grid=report(
            "results/{dataset}/{variant}/segmentation/qc.png",
            caption="../report/segmentation_qc.rst",
            category="Data",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "variant": "{variant}", "figure": "segmentation QC"},
        ),
    params:
        per_class=config["segmentation"]["qc_per_class"],
        seed=config["split"]["seed"],
    log:
        "logs/{dataset}/{variant}/segmentation_qc.log",
    benchmark:
        "logs/benchmarks/{dataset}/{variant}/segmentation_qc.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/segmentation_qc.py"
