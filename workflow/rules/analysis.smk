# Trustworthy comparisons: paired tests, repeated splits, leakage checks, explanations and
# model cards. Each rule gets only the config slice it uses.


rule compare_models:
    input:
        predictions=lambda wc: model_results(wc.task, "predictions.tsv"),
    output:
        table="results/{dataset}/{task}/comparisons.tsv",
    params:
        names=lambda wc: model_names(wc.task),
        classes=lambda wc: task_class_names(wc.task),
        cost_matrix=lambda wc: task_cost_matrix(wc.task),
        alpha=config["evaluation"]["alpha"],
        resamples=config["evaluation"]["bootstrap_resamples"],
        level=config["evaluation"]["ci_level"],
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/compare_models.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/compare_models.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/compare_models.py"


rule repeat_classic:
    input:
        features="results/{dataset}/{task}/{variant}/features.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
    output:
        predictions="results/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}/predictions.tsv",
        info="results/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}/train_info.json",
    wildcard_constraints:
        model="|".join(CLASSIC_MODELS) or "no-classic-model",
    params:
        model=lambda wc: model_spec(wc.model),
        classes=lambda wc: task_class_names(wc.task),
        ratios=lambda wc: task_split(wc.task)["ratios"],
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/repeat_classic.py"


rule repeat_deep:
    input:
        manifest="results/{dataset}/manifest.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
        cache=feature_cache_input,
        weights=lambda wc: keras_weights_input(config["models"][wc.model]),
    output:
        predictions="results/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}/predictions.tsv",
        info="results/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}/train_info.json",
    wildcard_constraints:
        model="|".join(DEEP_MODELS) or "no-deep-model",
    params:
        model=lambda wc: model_spec(wc.model),
        classes=lambda wc: task_class_names(wc.task),
        ratios=lambda wc: task_split(wc.task)["ratios"],
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/repeats/seed{split_seed}.tsv"
    conda:
        "../../envs/deep.yaml"
    script:
        "../scripts/repeat_deep.py"


rule evaluate_repeats:
    input:
        predictions=expand(
            "results/{{dataset}}/{{task}}/{{variant}}/{{model}}/repeats/seed{split_seed}/predictions.tsv",
            split_seed=config["evaluation"]["repeat_seeds"],
        ),
    output:
        table="results/{dataset}/{task}/{variant}/{model}/repeats.tsv",
    params:
        classes=lambda wc: task_class_names(wc.task),
        cost_matrix=lambda wc: task_cost_matrix(wc.task),
        split_seeds=config["evaluation"]["repeat_seeds"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/evaluate_repeats.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/evaluate_repeats.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/evaluate_repeats.py"


rule leakage_check:
    input:
        pairs="results/{dataset}/duplicates/pairs.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
        metrics=lambda wc: model_results(wc.task, "metrics.tsv", twin_models(wc.task)),
        twin_metrics=lambda wc: model_results(task_twin(wc.task), "metrics.tsv"),
    output:
        cross_split="results/{dataset}/{task}/leakage/cross_split_duplicates.tsv",
        optimism="results/{dataset}/{task}/leakage/optimism.tsv",
    params:
        twin_protocol=lambda wc: task_config(task_twin(wc.task))["protocol"],
    log:
        "logs/{dataset}/{task}/leakage_check.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/leakage_check.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/leakage_check.py"


rule gradcam:
    input:
        model="results/{dataset}/{task}/{variant}/{model}/model.keras",
        predictions="results/{dataset}/{task}/{variant}/{model}/predictions.tsv",
        manifest="results/{dataset}/manifest.tsv",
    output:
        gallery=report(
            "results/{dataset}/{task}/{variant}/{model}/gradcam.png",
            caption="../report/gradcam.rst",
            category="Explanations",
            subcategory="{task}",
            labels={"model": "{model}", "variant": "{variant}", "figure": "Grad-CAM"},
        ),
        selection="results/{dataset}/{task}/{variant}/{model}/gradcam.tsv",
    wildcard_constraints:
        model="|".join(DEEP_MODELS) or "no-deep-model",
    params:
        per_class=config["explain"]["gradcam_per_class"],
        seed=config["seed"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/gradcam.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/gradcam.tsv"
    conda:
        "../../envs/deep.yaml"
    script:
        "../scripts/gradcam.py"


rule explain_xgboost:
    input:
        model="results/{dataset}/{task}/{variant}/{model}/model.joblib",
        features="results/{dataset}/{task}/{variant}/features.tsv",
        splits="results/{dataset}/{task}/splits.tsv",
    output:
        table="results/{dataset}/{task}/{variant}/{model}/importance.tsv",
        figure=report(
            "results/{dataset}/{task}/{variant}/{model}/importance.png",
            caption="../report/importance.rst",
            category="Explanations",
            subcategory="{task}",
            labels={"model": "{model}", "variant": "{variant}", "figure": "feature importance"},
        ),
    wildcard_constraints:
        model="|".join(XGBOOST_MODELS) or "no-xgboost-model",
    params:
        top_k=config["explain"]["top_features"],
    log:
        "logs/{dataset}/{task}/{variant}/{model}/explain.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/explain.tsv"
    conda:
        "../../envs/classic.yaml"
    script:
        "../scripts/explain_xgboost.py"


rule model_card:
    input:
        metrics="results/{dataset}/{task}/{variant}/{model}/metrics.json",
        info="results/{dataset}/{task}/{variant}/{model}/train_info.json",
        splits="results/{dataset}/{task}/splits.tsv",
    output:
        card="results/{dataset}/{task}/{variant}/{model}/model_card.md",
    params:
        model=lambda wc: model_spec(wc.model),
        classes=lambda wc: task_class_names(wc.task),
        task_title=lambda wc: task_config(wc.task).get("title", wc.task),
        limitations=lambda wc: model_limitations(wc.task, wc.model),
    log:
        "logs/{dataset}/{task}/{variant}/{model}/model_card.log",
    benchmark:
        "logs/benchmarks/{dataset}/{task}/{variant}/{model}/model_card.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/model_card.py"
