import json

from leukbench.configcheck import check_config, task_classes
from leukbench.tasks import leakage_twins
from leukbench.deep.keras_weights import KERAS_WEIGHTS, weight_sources
from snakemake.utils import validate

SCHEMA = Path(workflow.basedir) / "config" / "config.schema.yaml"

# Readable, key-naming errors first; snakemake's validate then fills schema defaults.
check_config(config, SCHEMA, Path.cwd())
validate(config, schema=str(SCHEMA))

PROVENANCE_DIR = "logs/provenance"
# What the evaluate rule depends on (not alpha or the repeat seeds, which other rules use).
EVALUATION_SETTINGS = {
    key: config["evaluation"][key]
    for key in ("bootstrap_resamples", "ci_level", "ece_bins", "temperature_scaling")
}
DATASETS = list(config["datasets"])
# Reported tasks, and every task the DAG runs (each with its leakage-check twin).
TASKS = list(config["tasks"])
TWINS = leakage_twins(config)
# Datasets some task uses: the others are neither downloaded nor analysed.
USED_DATASETS = sorted({t["dataset"] for t in config["tasks"].values()})
ALL_TASKS = {**config["tasks"], **TWINS}
MODELS = list(config["models"])
KERAS_WEIGHT_FILES = {name: entry["file"] for name, entry in KERAS_WEIGHTS.items()}
KERAS_WEIGHT_SOURCES = weight_sources()
VARIANTS = sorted({v for d in config["datasets"].values() for v in d["variants"]})


wildcard_constraints:
    dataset="|".join(DATASETS),
    task="|".join(ALL_TASKS),
    variant="|".join(VARIANTS),
    model="|".join(MODELS),
    split_seed=r"\d+",


def dataset_config(dataset):
    return config["datasets"][dataset]


REMOTE_SOURCES = ("kaggle", "tcia")


def is_remote(dataset):
    return dataset_config(dataset)["source"] in REMOTE_SOURCES


def data_folder(dataset):
    """What ingestion reads: a local folder, or the extracted download of a remote source."""
    cfg = dataset_config(dataset)
    if is_remote(dataset):
        return f"resources/{dataset}/data"
    return cfg["path"]


def data_root(dataset):
    cfg = dataset_config(dataset)
    if is_remote(dataset):
        return str(Path(data_folder(dataset), cfg[cfg["source"]].get("subdir", "")))
    return cfg["path"]


def downloaded_archives(wildcards):
    if dataset_config(wildcards.dataset)["source"] == "tcia":
        return f"resources/{wildcards.dataset}/download/tcia.json"
    return f"resources/{wildcards.dataset}/download/archive.zip"


def audit_variant(dataset):
    return config["duplicates"]["variant"] or variants(dataset)[0]


def variants(dataset):
    return dataset_config(dataset)["variants"]


def classes(dataset):
    return dataset_config(dataset)["classes"]


def task_config(task):
    return ALL_TASKS[task]


def task_twin(task):
    """The leakage-check twin of a reported task, or None."""
    return next((name for name, twin in TWINS.items() if twin["twin_of"] == task), None)


def task_dataset(task):
    return task_config(task)["dataset"]


def dataset_tasks(dataset):
    return [t for t in TASKS if task_dataset(t) == dataset]


def task_and_twin(task):
    return [t for t in (task, task_twin(task)) if t is not None]


def task_label_map(task):
    """Task label -> the dataset labels it gathers, in the task's class order."""
    return task_classes(task_config(task), dataset_config(task_dataset(task)))


def task_class_names(task):
    return list(task_label_map(task))


def task_cost_matrix(task):
    """The task's cost matrix; 1 for every error when the task sets none."""
    k = len(task_class_names(task))
    default = [[0 if i == j else 1 for j in range(k)] for i in range(k)]
    return task_config(task).get("cost_matrix") or default


def model_spec(model):
    """A model's settings with sorted keys: reordering them in the config reruns nothing."""
    return json.loads(json.dumps(config["models"][model], sort_keys=True))


def task_split(task):
    """The split settings of a task: its own, falling back to the `split` defaults."""
    cfg, defaults = task_config(task), config["split"]
    own_size = cfg.get("n_per_class") is not None or cfg.get("n_total") is not None
    return {
        "seed": defaults["seed"],
        "ratios": {k: cfg.get("ratios", defaults["ratios"])[k] for k in ("train", "val", "test")},
        "n_per_class": cfg.get("n_per_class") if own_size else defaults.get("n_per_class"),
        "n_total": cfg.get("n_total") if own_size else defaults.get("n_total"),
        "protocol": cfg["protocol"],
        "labels": task_label_map(task),
        # Only proxy splits depend on it, so only they rerun when it changes.
        **({"proxy_groups": config["leakage"]["proxy_groups"]} if cfg["protocol"] == "proxy" else {}),
    }


def task_models(task):
    return task_config(task).get("models") or MODELS


def model_variants(dataset, model):
    """The dataset variants a model trains on: all of them unless the model lists some."""
    wanted = config["models"][model].get("variants")
    return [v for v in variants(dataset) if wanted is None or v in wanted]


def task_dir(task):
    return f"results/{task_dataset(task)}/{task}"


def model_results(task, filename, models=None):
    dataset = task_dataset(task)
    chosen = [m for m in task_models(task) if models is None or m in models]
    return [
        f"{task_dir(task)}/{variant}/{model}/{filename}"
        for model in chosen
        for variant in model_variants(dataset, model)
    ]


def segmentation_outputs(dataset, filename):
    return [f"results/{dataset}/{variant}/segmentation/{filename}" for variant in variants(dataset)]


def task_report_params(task):
    """Exactly the configuration a task's report section shows, so edits elsewhere don't rerun it."""
    dataset = task_dataset(task)
    return {
        "name": task,
        **task_config(task),
        "classes": task_class_names(task),
        "labels": task_label_map(task),
        "cost_matrix": task_cost_matrix(task),
        "cost_matrix_set": "cost_matrix" in task_config(task),
        "split": task_split(task),
        "dataset": {"name": dataset, **dataset_config(dataset)},
        "duplicates": config["duplicates"],
        "segmentation": config["segmentation"],
        "evaluation": {**config["evaluation"], "seed": config["seed"]},
    }


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
    return f"results/{wildcards.dataset}/{wildcards.task}/{wildcards.variant}/feature_cache/{cache_name(spec)}.npz"


def keras_weights_input(spec):
    """Backbones whose ImageNet weights come from Keras' storage are fetched by a local rule."""
    if spec.get("weights") == "imagenet" and spec.get("backbone", "efficientnet_lite0") in KERAS_WEIGHT_FILES:
        return f"resources/weights/{KERAS_WEIGHT_FILES[spec['backbone']]}"
    return []


# --- analysis ----------------------------------------------------------------------------

CLASSIC_MODELS = [m for m, c in config["models"].items() if c["family"] in ("svm", "xgboost")]
XGBOOST_MODELS = [m for m, c in config["models"].items() if c["family"] == "xgboost"]
# evaluation.repeat_models: null repeats every model.
REPEAT_MODELS = config["evaluation"].get("repeat_models") or MODELS


def model_names(task):
    """'<variant>/<model>' in the order of model_results(task, ...)."""
    return [
        f"{Path(p).parts[-3]}/{Path(p).parts[-2]}" for p in model_results(task, "predictions.tsv")
    ]


def twin_models(task):
    """The models of `task` that its leakage twin also runs."""
    twin = task_twin(task)
    return [m for m in task_models(task) if twin is not None and m in task_models(twin)]


def model_limitations(task, model):
    notes = []
    cfg, dataset = task_config(task), dataset_config(task_dataset(task))
    if dataset.get("notes"):
        notes.append(dataset["notes"])
    if config["models"][model]["family"] in DEEP_FAMILIES:
        notes.append(
            "Trained with the CPU-sized settings of config/config.yaml (smaller inputs, fewer "
            "epochs than the published studies); config/published.yaml restores them."
        )
    if not config["duplicates"]["collapse"]:
        notes.append("Duplicate images were kept, so near-copies can sit in train and test.")
    return notes


def repeat_results(task):
    """The repeated-evaluation tables of `task`: none without repeat seeds."""
    if not config["evaluation"]["repeat_seeds"]:
        return []
    return model_results(task, "repeats.tsv", REPEAT_MODELS)


def analysis_outputs(task):
    """Per-model explanations and cards, and the task's comparisons and leakage check."""
    outputs = model_results(task, "model_card.md")
    outputs += model_results(task, "gradcam.png", DEEP_MODELS)
    outputs += model_results(task, "importance.png", XGBOOST_MODELS)
    outputs += repeat_results(task)
    outputs.append(f"{task_dir(task)}/comparisons.tsv")
    if task_twin(task) is not None:
        outputs.append(f"{task_dir(task)}/leakage/optimism.tsv")
    return outputs
