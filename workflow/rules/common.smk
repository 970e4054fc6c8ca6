from leukbench.configcheck import check_config
from leukbench.deep.keras_weights import KERAS_WEIGHTS, weight_sources
from snakemake.utils import validate

SCHEMA = Path(workflow.basedir) / "config" / "config.schema.yaml"

# Readable, key-naming errors first; snakemake's validate then fills schema defaults.
check_config(config, SCHEMA, Path.cwd())
validate(config, schema=str(SCHEMA))

DATASETS = list(config["datasets"])
MODELS = list(config["models"])
KERAS_WEIGHT_FILES = {name: entry["file"] for name, entry in KERAS_WEIGHTS.items()}
KERAS_WEIGHT_SOURCES = weight_sources()
VARIANTS = sorted({v for d in config["datasets"].values() for v in d["variants"]})


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    model="|".join(MODELS),


def dataset_config(dataset):
    return config["datasets"][dataset]


def data_folder(dataset):
    """What ingestion reads: a local folder, or the extracted download of a remote source."""
    cfg = dataset_config(dataset)
    if cfg["source"] == "kaggle":
        return f"resources/{dataset}/data"
    return cfg["path"]


def data_root(dataset):
    cfg = dataset_config(dataset)
    if cfg["source"] == "kaggle":
        return str(Path(data_folder(dataset), cfg["kaggle"].get("subdir", "")))
    return cfg["path"]


def audit_variant(dataset):
    return config["duplicates"]["variant"] or variants(dataset)[0]


def variants(dataset):
    return dataset_config(dataset)["variants"]


def classes(dataset):
    return dataset_config(dataset)["classes"]


def model_variants(dataset, model):
    """The dataset variants a model trains on: all of them unless the model lists some."""
    wanted = config["models"][model].get("variants")
    return [v for v in variants(dataset) if wanted is None or v in wanted]


def model_results(dataset, filename, models=MODELS):
    return [
        f"results/{dataset}/{variant}/{model}/{filename}"
        for model in models
        for variant in model_variants(dataset, model)
    ]


def segmentation_outputs(dataset, filename):
    return [f"results/{dataset}/{variant}/segmentation/{filename}" for variant in variants(dataset)]


# --- deep models -------------------------------------------------------------------------

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
    return f"file-{hashlib.sha256(str(weights).encode()).hexdigest()[:10]}"


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
