rule feature_cache:
    input:
        manifest="results/{dataset}/manifest.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
        weights=lambda wc: keras_weights_input(cache_spec(wc.cache)),
    output:
        cache="results/{dataset}/{task}/{variant}/feature_cache/{cache}.npz",
    params:
        spec=lambda wc: cache_spec(wc.cache),
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/{variant}/feature_cache/{cache}.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/feature_cache/{cache}.tsv"
    conda:
        "../../envs/deep.yaml"
    script:
        "../scripts/feature_cache.py"


rule train_deep:
    input:
        manifest="results/{dataset}/manifest.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
        cache=feature_cache_input,
        weights=lambda wc: keras_weights_input(config["models"][wc.model]),
    output:
        model="results/{dataset}/{task}/{variant}/{model}/model.keras",
        labels="results/{dataset}/{task}/{variant}/{model}/labels.json",
        predictions="results/{dataset}/{task}/{variant}/{model}/predictions.tsv",
        info="results/{dataset}/{task}/{variant}/{model}/train_info.json",
        history="results/{dataset}/{task}/{variant}/{model}/history.tsv",
    wildcard_constraints:
        model="|".join(DEEP_MODELS) or "no-deep-model",
    params:
        model=lambda wc: model_spec(wc.model),
        classes=lambda wc: task_class_names(wc.task),
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/train.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/train.tsv"
    conda:
        "../../envs/deep.yaml"
    script:
        "../scripts/train_deep.py"


rule fetch_keras_weights:
    output:
        weights="resources/weights/{filename}",
    params:
        source=lambda wc: KERAS_WEIGHT_SOURCES[wc.filename],
    log:
        "logs/weights/{filename}.log",
    benchmark:
        "logs/benchmarks/weights/{filename}.tsv"
    conda:
        "../../envs/data.yaml"
    localrule: True
    retries: 2
    script:
        "../scripts/fetch_weights.py"
