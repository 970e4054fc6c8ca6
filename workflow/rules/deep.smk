DEEP_FAMILIES = ("cnn", "transfer", "hybrid")
DEEP_MODELS = [m for m, c in config["models"].items() if c["family"] in DEEP_FAMILIES]


def uses_feature_cache(spec):
    return (
        spec["family"] == "transfer"
        and spec.get("cache_features", True)
        and spec.get("trainable_layers", 0) == 0
    )


def weights_tag(spec):
    weights = spec.get("weights")
    if weights is None:
        return "random"
    if weights == "imagenet":
        return "imagenet"
    return "file-" + hashlib.sha256(str(weights).encode()).hexdigest()[:10]


def cache_name(spec):
    """Readable cache key: everything that changes a backbone's features for an image.

    The cache file itself carries leukbench.deep.cache.cache_key (which hashes weight files by
    content) and training refuses a cache whose key does not match the model.
    """
    views = 8 if spec["augmentation"] == "flip_rotate8" else spec.get("cache_views", 4)
    views = 1 if spec["augmentation"] == "none" else views
    pooling = spec.get("head", {}).get("pooling", "avg")
    if spec["backbone"] == "resnet50":
        pooling = "flatten"  # study 004's head is fixed
    return (
        f"{spec['backbone']}-{weights_tag(spec)}-{spec['image_size']}px-{pooling}-"
        f"{spec['augmentation']}-{views}views-{spec.get('cache_dtype', 'float32')}"
    )


def cache_spec(name):
    """The first model whose cache name is `name`; models sharing a backbone share its cache."""
    for model in DEEP_MODELS:
        spec = config["models"][model]
        if uses_feature_cache(spec) and cache_name(spec) == name:
            return spec
    raise ValueError(f"no transfer model in config uses the feature cache '{name}'")


def feature_cache_input(wildcards):
    spec = config["models"][wildcards.model]
    if not uses_feature_cache(spec):
        return []
    return f"results/{wildcards.dataset}/{wildcards.variant}/feature_cache/{cache_name(spec)}.npz"


def keras_weights_input(spec):
    """Backbones whose ImageNet weights come from Keras' storage are fetched by a local rule."""
    if spec.get("weights") == "imagenet" and spec.get("backbone", "efficientnet_lite0") in KERAS_WEIGHT_FILES:
        return f"resources/weights/{KERAS_WEIGHT_FILES[spec['backbone']]}"
    return []


rule feature_cache:
    input:
        manifest="results/{dataset}/manifest.tsv",
        splits="results/{dataset}/splits.tsv",
        weights=lambda wc: keras_weights_input(cache_spec(wc.cache)),
    output:
        cache="results/{dataset}/{variant}/feature_cache/{cache}.npz",
    params:
        spec=lambda wc: cache_spec(wc.cache),
        seed=config["seed"],
    log:
        "logs/{dataset}/{variant}/feature_cache/{cache}.log",
    benchmark:
        "logs/benchmarks/{dataset}/{variant}/feature_cache/{cache}.tsv"
    conda:
        "../../envs/deep.yaml"
    script:
        "../scripts/feature_cache.py"


rule train_deep:
    input:
        manifest="results/{dataset}/manifest.tsv",
        splits="results/{dataset}/splits.tsv",
        cache=feature_cache_input,
        weights=lambda wc: keras_weights_input(config["models"][wc.model]),
    output:
        model="results/{dataset}/{variant}/{model}/model.keras",
        labels="results/{dataset}/{variant}/{model}/labels.json",
        predictions="results/{dataset}/{variant}/{model}/predictions.tsv",
        info="results/{dataset}/{variant}/{model}/train_info.json",
        history="results/{dataset}/{variant}/{model}/history.tsv",
    wildcard_constraints:
        model="|".join(DEEP_MODELS) or "no-deep-model",
    params:
        model=lambda wc: config["models"][wc.model],
        classes=lambda wc: classes(wc.dataset),
        seed=config["seed"],
    log:
        "logs/{dataset}/{variant}/{model}/train.log",
    benchmark:
        "logs/benchmarks/{dataset}/{variant}/{model}/train.tsv"
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
