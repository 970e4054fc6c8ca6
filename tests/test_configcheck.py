"""Config checks: the shipped config passes; every mistake is reported under its key path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from leukbench.configcheck import ConfigError, check_config, key_path, schema_errors

REPO = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO / "config" / "config.yaml"
SCHEMA_PATH = REPO / "config" / "config.schema.yaml"
SHIPPED: dict[str, Any] = yaml.safe_load(CONFIG_PATH.read_text())
LOCAL_ALL: dict[str, Any] = yaml.safe_load((REPO / "config" / "local-all.yaml").read_text())
SHIPPED_DATA = (REPO / LOCAL_ALL["datasets"]["kaggle_all"]["path"]).resolve()


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """A copy of the shipped config whose data path is an existing folder under tmp_path."""
    data = tmp_path / "kaggle-all"
    data.mkdir()
    copied = copy.deepcopy(SHIPPED)
    copied["datasets"]["kaggle_all"] |= {"source": "local", "path": str(data)}
    return copied


def config_error(config: dict[str, Any], base_dir: Path = REPO) -> str:
    with pytest.raises(ConfigError) as caught:
        check_config(config, SCHEMA_PATH, base_dir)
    return str(caught.value)


def test_shipped_config_needs_no_local_data() -> None:
    """Remote sources are checked without touching the network or the disk."""
    check_config(copy.deepcopy(SHIPPED), SCHEMA_PATH, Path("/nonexistent"))


def test_local_overlay_passes_with_the_local_data() -> None:
    if not SHIPPED_DATA.is_dir():
        raise FileNotFoundError(f"the Kaggle ALL copy is missing at {SHIPPED_DATA}")
    overlaid = copy.deepcopy(SHIPPED)
    overlaid["datasets"]["kaggle_all"] |= LOCAL_ALL["datasets"]["kaggle_all"]
    check_config(overlaid, SCHEMA_PATH, REPO)


def test_shipped_config_passes_the_schema(config: dict[str, Any]) -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema_errors(config, schema) == []
    check_config(config, SCHEMA_PATH, REPO)


def test_snakemake_validate_accepts_the_shipped_config() -> None:
    from snakemake.utils import validate

    validated = copy.deepcopy(SHIPPED)
    validate(validated, str(SCHEMA_PATH))  # raises WorkflowError on failure
    # defaults are filled in where the config leaves them out, and nothing set is changed
    assert validated["segmentation"]["qc_per_class"] == SHIPPED["segmentation"]["qc_per_class"]
    assert validated["split"] == SHIPPED["split"]


def test_snakemake_validate_rejects_an_unknown_key() -> None:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    broken = copy.deepcopy(SHIPPED)
    broken["segmentation"]["foo"] = 1
    with pytest.raises(WorkflowError):
        validate(broken, str(SCHEMA_PATH))


def test_relative_data_path_is_resolved_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "data" / "here").mkdir(parents=True)
    relative = copy.deepcopy(SHIPPED)
    relative["datasets"]["kaggle_all"] |= {"source": "local", "path": "data/here"}
    check_config(relative, SCHEMA_PATH, tmp_path)
    message = config_error(relative, base_dir=tmp_path / "elsewhere")
    assert "datasets.kaggle_all.path" in message


def mutate(config: dict[str, Any], keys: str, value: Any) -> dict[str, Any]:
    """Set config[k1][k2]... = value for a dotted key path."""
    *parents, last = keys.split(".")
    target = config
    for key in parents:
        target = target[key]
    target[last] = value
    return config


Mutation = Callable[[dict[str, Any]], object]


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        pytest.param(
            lambda c: mutate(c, "extra", 1), "extra", "unknown key", id="top-level-unknown"
        ),
        pytest.param(
            lambda c: mutate(c, "segmentation.foo", 1),
            "segmentation.foo",
            "unknown key",
            id="nested-unknown",
        ),
        pytest.param(
            lambda c: mutate(c, "datasets.kaggle_all.colour", "x"),
            "datasets.kaggle_all.colour",
            "unknown key",
            id="dataset-unknown",
        ),
        pytest.param(
            lambda c: mutate(c, "models.svm.grid.Cs", [1]),
            "models.svm.grid.Cs",
            "unknown key",
            id="model-grid-unknown",
        ),
        pytest.param(
            lambda c: mutate(c, "split.seed", "abc"),
            "split.seed",
            "is not of type 'integer'",
            id="wrong-type",
        ),
        pytest.param(
            lambda c: mutate(c, "duplicates.max_distance", 65),
            "duplicates.max_distance",
            "65",
            id="out-of-range",
        ),
        pytest.param(
            lambda c: mutate(c, "segmentation.hue", [0.7]),
            "segmentation.hue",
            "too short",
            id="short-hue",
        ),
        pytest.param(
            lambda c: c["split"].pop("ratios"),
            "split",
            "'ratios' is a required",
            id="missing-required",
        ),
        pytest.param(
            lambda c: mutate(c, "image_size", [224, "big"]),
            "image_size[1]",
            "not of type 'integer'",
            id="list-item",
        ),
        pytest.param(
            lambda c: mutate(c, "models.xgboost.family", "forest"),
            "models.xgboost.family",
            "forest",
            id="unknown-family",
        ),
    ],
)
def test_schema_errors_name_the_key_path(
    config: dict[str, Any], change: Mutation, key: str, fragment: str
) -> None:
    change(config)
    message = config_error(config)
    line = next((line for line in message.splitlines() if line.strip().startswith(f"{key}:")), None)
    assert line is not None, f"no line for {key!r} in:\n{message}"
    assert fragment in line


def test_every_schema_error_is_reported_at_once(config: dict[str, Any]) -> None:
    mutate(config, "split.seed", "abc")
    mutate(config, "segmentation.foo", 1)
    mutate(config, "bogus", True)
    message = config_error(config)
    for key in ("split.seed:", "segmentation.foo:", "bogus:"):
        assert key in message


def test_missing_data_path(config: dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    config["datasets"]["kaggle_all"]["path"] = str(missing)
    message = config_error(config)
    assert "datasets.kaggle_all.path:" in message
    assert str(missing) in message


def test_non_square_cost_matrix(config: dict[str, Any]) -> None:
    config["tasks"]["all_subtypes"]["cost_matrix"] = [
        [0, 10, 20, 30],
        [10, 0, 15],
        [20, 15, 0, 10],
        [30, 25, 10, 0],
    ]
    message = config_error(config)
    assert "tasks.all_subtypes.cost_matrix:" in message
    assert "4x4" in message


def test_cost_matrix_with_the_wrong_number_of_classes(config: dict[str, Any]) -> None:
    config["tasks"]["all_subtypes"]["cost_matrix"] = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    message = config_error(config)
    assert "tasks.all_subtypes.cost_matrix:" in message
    assert "4x4" in message and "Benign" in message


def test_cost_matrix_with_a_non_zero_diagonal(config: dict[str, Any]) -> None:
    config["tasks"]["all_subtypes"]["cost_matrix"][2][2] = 5
    message = config_error(config)
    assert "tasks.all_subtypes.cost_matrix:" in message
    assert "diagonal" in message


def test_negative_cost_is_a_schema_error(config: dict[str, Any]) -> None:
    config["tasks"]["all_subtypes"]["cost_matrix"][0][1] = -1
    assert "tasks.all_subtypes.cost_matrix[0][1]:" in config_error(config)


def test_duplicates_variant_must_be_a_dataset_variant(config: dict[str, Any]) -> None:
    config["duplicates"]["variant"] = "Stained"
    message = config_error(config)
    assert "duplicates.variant:" in message and "Stained" in message


def test_empty_hue_range(config: dict[str, Any]) -> None:
    config["segmentation"]["hue"] = [0.5, 0.5]
    assert "segmentation.hue:" in config_error(config)


def test_n_per_class_and_n_total_are_exclusive(config: dict[str, Any]) -> None:
    config["split"]["n_per_class"] = 10
    config["split"]["n_total"] = 40
    assert "split: set n_per_class or n_total, not both" in config_error(config)


def test_task_on_an_unknown_dataset(config: dict[str, Any]) -> None:
    config["tasks"]["aml_vs_normal"]["dataset"] = "aml"
    assert "tasks.aml_vs_normal.dataset: unknown dataset 'aml'" in config_error(config)


def test_task_labels_must_come_from_its_dataset_once(config: dict[str, Any]) -> None:
    config["tasks"]["aml_vs_normal"]["classes"] = {"aml": ["MYO", "Pro"], "normal": ["MYO"]}
    message = config_error(config)
    assert "tasks.aml_vs_normal.classes.aml: 'Pro' is not a class of dataset 'aml_lmu'" in message
    assert "tasks.aml_vs_normal.classes.normal: 'MYO' is already mapped to 'aml'" in message


def test_binary_task_cost_matrix_is_sized_by_task_classes(config: dict[str, Any]) -> None:
    config["tasks"]["aml_vs_normal"]["cost_matrix"] = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    assert "tasks.aml_vs_normal.cost_matrix: must be 2x2" in config_error(config)
    config["tasks"]["aml_vs_normal"]["cost_matrix"] = [[0, 5], [1, 0]]
    check_config(config, SCHEMA_PATH, REPO)


def test_task_models_must_exist(config: dict[str, Any]) -> None:
    config["tasks"]["all_subtypes"]["models"] = ["svm", "resnet"]
    assert "tasks.all_subtypes.models: unknown model(s) ['resnet']" in config_error(config)


def test_repeat_and_leakage_model_lists_must_name_models(config: dict[str, Any]) -> None:
    config["evaluation"] = {"repeat_models": ["svm", "densenet"]}
    config["leakage"] = {"models": ["vit"]}
    message = config_error(config)
    assert "evaluation.repeat_models: unknown model(s) ['densenet']" in message
    assert "leakage.models: unknown model(s) ['vit']" in message
    config["evaluation"] = {"repeat_models": ["svm", "aml_cnn"], "repeat_seeds": []}
    config["leakage"] = {"models": None}
    check_config(config, SCHEMA_PATH, REPO)


def test_patient_disjoint_task_needs_group_ids(config: dict[str, Any]) -> None:
    config["tasks"]["all_subtypes"]["protocol"] = "group"
    assert "tasks.all_subtypes.protocol: 'group' needs patient ids" in config_error(config)


def test_names_must_not_clash(config: dict[str, Any]) -> None:
    config["tasks"]["svm"] = {"dataset": "kaggle_all"}
    config["tasks"]["Original"] = {"dataset": "kaggle_all"}
    message = config_error(config)
    assert "tasks.svm: the name 'svm' is also used in models" in message
    assert "tasks.Original: the name 'Original' is also used in variants" in message


def test_tcia_source_needs_its_collection(config: dict[str, Any]) -> None:
    del config["datasets"]["aml_lmu"]["tcia"]
    assert "datasets.aml_lmu: 'tcia' is a required property" in config_error(config)


def test_key_path_formatting() -> None:
    assert key_path([]) == "<config root>"
    assert key_path(["split", "seed"]) == "split.seed"
    assert key_path(["datasets", "kaggle_all", "cost_matrix", 0, 1]) == (
        "datasets.kaggle_all.cost_matrix[0][1]"
    )
