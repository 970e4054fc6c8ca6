rule train_classic:
    input:
        features="results/{dataset}/{task}/{variant}/features.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
    output:
        model="results/{dataset}/{task}/{variant}/{model}/model.joblib",
        predictions="results/{dataset}/{task}/{variant}/{model}/predictions.tsv",
        info="results/{dataset}/{task}/{variant}/{model}/train_info.json",
    wildcard_constraints:
        model="|".join(CLASSIC_MODELS),
    params:
        model=lambda wc: model_spec(wc.model),
        classes=lambda wc: task_class_names(wc.task),
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/train.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/train.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/train_classic.py"
