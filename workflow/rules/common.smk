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
