CLASSIC_MODELS = [m for m, c in config["models"].items() if c["family"] in ("svm", "xgboost")]


rule train_classic:
    input:
        features="results/{dataset}/{variant}/features.tsv",
        splits="results/{dataset}/splits.tsv",
    output:
        model="results/{dataset}/{variant}/{model}/model.joblib",
        predictions="results/{dataset}/{variant}/{model}/predictions.tsv",
        info="results/{dataset}/{variant}/{model}/train_info.json",
    wildcard_constraints:
        model="|".join(CLASSIC_MODELS),
    params:
        model=lambda wc: config["models"][wc.model],
        classes=lambda wc: classes(wc.dataset),
        seed=config["seed"],
    log:
        "logs/{dataset}/{variant}/{model}/train.log",
    benchmark:
        "logs/benchmarks/{dataset}/{variant}/{model}/train.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/train_classic.py"
