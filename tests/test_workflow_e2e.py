"""End to end: the workflow on a small sample of the real Kaggle ALL images."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import local_all_config, sample_kaggle_all, snakemake, write_config

pytestmark = pytest.mark.e2e

PER_CLASS = 14
MODELS = ("svm", "xgboost")
DEEP_MODELS = ("aml_cnn", "all_cnn", "effnet_lite0", "hybrid_lite0_pooled")
VARIANTS = ("Original", "Segmented")
REPEAT_SEEDS = (1, 2)
# Deep models train on Original only (their `variants`), shrunk here to smoke-test size.
TINY_DEEP = {
    "aml_cnn": {"image_size": 48, "epochs": 1},
    "all_cnn": {"image_size": 48, "epochs": 1},
    "effnet_lite0": {"image_size": 96, "epochs": 2},
    "hybrid_lite0_pooled": {"image_size": 64, "epochs": 1, "batch_size": 8},
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("e2e")
    data = sample_kaggle_all(workdir / "data", PER_CLASS)
    # Bad inputs that must be listed, never fatal.
    (data / "Original" / "Benign" / "broken.jpg").write_bytes(
        (data / "Original" / "Benign" / "WBC-Benign-001.jpg").read_bytes()[:900]
    )
    (data / "Segmented" / "Pro" / "notes.txt").write_text("not an image")
    (data / "Original" / "Early" / ".DS_Store").write_bytes(b"\0\1")
    config = local_all_config(data)
    config["models"]["svm"]["grid"] = {"kernel": ["rbf"], "C": [1, 10], "gamma": ["scale"]}
    config["models"]["xgboost"]["params"]["n_estimators"] = 200
    for model, overrides in TINY_DEEP.items():
        config["models"][model].update(overrides)
    config["evaluation"] = {"repeat_seeds": list(REPEAT_SEEDS)}
    write_config(workdir, config)
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_every_model_and_variant_is_evaluated_sanely(finished_run: Path) -> None:
    for variant in VARIANTS:
        for model in MODELS:
            metrics = json.loads(
                (
                    finished_run / f"results/kaggle_all/all_subtypes/{variant}/{model}/metrics.json"
                ).read_text()
            )
            test = metrics["splits"]["test"]
            n = test["n"]
            assert n == sum(map(sum, test["confusion_matrix"])) > 0
            assert 0.5 < test["accuracy"] <= 1.0, (variant, model, test["accuracy"])
            assert test["total_cost"] >= 0 and test["average_cost"] == test["total_cost"] / n
            for key in (
                "cost_sensitive_accuracy",
                "cost_sensitive_accuracy_normalised",
                "f1_macro",
                "f1_weighted",
            ):
                assert 0.0 <= test[key] <= 1.0
            assert metrics["splits"]["train"]["accuracy"] >= test["accuracy"] - 0.2


def test_deep_models_land_in_the_same_evaluation(finished_run: Path) -> None:
    table = pd.read_csv(finished_run / "results/kaggle_all/all_subtypes/metrics.tsv", sep="\t")
    for model in DEEP_MODELS:
        run = finished_run / f"results/kaggle_all/all_subtypes/Original/{model}"
        assert (run / "model.keras").stat().st_size > 0
        history = pd.read_csv(run / "history.tsv", sep="\t")
        assert len(history) >= 1 and history["loss"].notna().all()
        rows = table[(table["model"] == model) & (table["variant"] == "Original")]
        accuracy = rows[(rows["split"] == "test") & (rows["metric"] == "accuracy")]["value"]
        assert len(accuracy) == 1 and 0.0 <= accuracy.iloc[0] <= 1.0
        seconds = rows[rows["metric"] == "train_seconds"]["value"]
        assert len(seconds) == 1 and seconds.iloc[0] > 0
        assert not (finished_run / f"results/kaggle_all/all_subtypes/Segmented/{model}").exists()
    caches = list(
        (finished_run / "results/kaggle_all/all_subtypes/Original/feature_cache").glob("*.npz")
    )
    assert [c.name for c in caches] == [
        "efficientnet_lite0-imagenet-96px-avg-flip_rotate8-8views-float32.npz"
    ]


def test_splits_are_shared_disjoint_and_stratified(finished_run: Path) -> None:
    splits = pd.read_csv(finished_run / "results/kaggle_all/all_subtypes/splits.tsv", sep="\t")
    assert splits["id"].is_unique
    assert set(splits["split"]) == {"train", "val", "test"}
    assert (splits["protocol"] == "image").all()
    for variant in VARIANTS:
        for model in MODELS:
            predictions = pd.read_csv(
                finished_run / f"results/kaggle_all/all_subtypes/{variant}/{model}/predictions.tsv",
                sep="\t",
            )
            test_ids = set(predictions.loc[predictions["split"] == "test", "id"])
            assert test_ids == set(splits.loc[splits["split"] == "test", "id"])
    per_class_test = splits[splits["split"] == "test"]["label"].value_counts()
    assert set(per_class_test.index) == {"Benign", "Early", "Pre", "Pro"}


def test_bad_files_are_listed_not_fatal(finished_run: Path) -> None:
    rejected = pd.read_csv(finished_run / "results/kaggle_all/rejected.tsv", sep="\t")
    reasons = dict(
        zip(rejected["path"].map(lambda p: Path(p).name), rejected["reason"], strict=True)
    )
    assert "truncated" in reasons["broken.jpg"] or "corrupt" in reasons["broken.jpg"]
    assert "not an image" in reasons["notes.txt"]
    assert reasons[".DS_Store"] == "hidden file"


def test_duplicates_in_the_real_sample_are_found_and_collapsed(finished_run: Path) -> None:
    # WBC-Benign-004/005 are the same field of view (pHash distance 2) in the real data.
    pairs = pd.read_csv(finished_run / "results/kaggle_all/duplicates/pairs.tsv", sep="\t")
    found = set(zip(pairs["id_a"], pairs["id_b"], strict=True))
    assert ("Benign/WBC-Benign-004", "Benign/WBC-Benign-005") in found
    splits = pd.read_csv(finished_run / "results/kaggle_all/all_subtypes/splits.tsv", sep="\t")
    assert not {"Benign/WBC-Benign-004", "Benign/WBC-Benign-005"} <= set(splits["id"])
    excluded = pd.read_csv(finished_run / "results/kaggle_all/all_subtypes/excluded.tsv", sep="\t")
    assert excluded["reason"].str.startswith("duplicate of").any()


def test_report_is_self_contained_and_complete(finished_run: Path) -> None:
    task_page = (finished_run / "reports/all_subtypes.html").read_text()
    html = (finished_run / "reports/report.html").read_text()
    assert 'id="task-all_subtypes"' in task_page and 'id="task-all_subtypes"' in html
    assert 'class="protocol">image-level<' in html
    provenance = json.loads((finished_run / "logs/provenance/latest.json").read_text())
    for shown in (provenance["git"]["commit"], provenance["config_sha256"], "split.seed = 123"):
        assert shown in html, shown
    assert "snakemake" in provenance["command"] and "--cores 2 all" in provenance["command"]
    info = json.loads(
        (finished_run / "results/kaggle_all/all_subtypes/Original/svm/train_info.json").read_text()
    )
    assert info["provenance"]["packages"]["scikit-learn"]
    for section in (
        "Model comparison",
        "Per model: confusion",
        "Rejected files: 3",
        "Duplicates",
        "Segmentation QC",
        "Protocol",
        "Image-level split",
        "Configuration",
        "published",
    ):
        assert section in html, section
    sources = re.findall(r'src="([^"]+)"', html)
    panels = len(MODELS) * len(VARIANTS) + len(DEEP_MODELS)
    # Per model: confusion, cost-weighted confusion, reliability, ROC, PR, F1-threshold; plus a
    # Grad-CAM gallery per deep model, an importance plot per XGBoost model, one QC grid per
    # variant and training curves per deep model.
    expected = 6 * panels + len(DEEP_MODELS) + len(VARIANTS) + len(VARIANTS) + len(DEEP_MODELS)
    assert len(sources) == expected
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in html.replace("http://json-schema.org", "")


def test_report_shows_uncertainty_leakage_and_explanations(finished_run: Path) -> None:
    html = (finished_run / "reports/report.html").read_text()
    comparison = html.split('class="table sortable comparison"')[1].split("</table>")[0]
    # Every one of our rows shows its test accuracy with a bootstrap interval.
    assert len(re.findall(r"<td>0\.\d{4} \[0\.\d{4}, [01]\.\d{4}\]</td>", comparison)) >= 8
    assert "best" in comparison and ("n.s. (p=" in comparison or " *" in comparison)
    # Duplicates are collapsed by default, so none crosses the split.
    assert re.search(r'class="cross-split">0<', html)
    optimism = html.split('class="table sortable optimism"')[1].split("</table>")[0]
    for model in (*MODELS, *DEEP_MODELS):
        assert f"<td>{model}</td>" in optimism, model
    for text in ("proxy groups", "ECE", "Grad-CAM", "TreeSHAP", "Not for diagnosis"):
        assert text in html, text
    cards = list((finished_run / "results/kaggle_all/all_subtypes").rglob("model_card.md"))
    assert len(cards) == len(MODELS) * len(VARIANTS) + len(DEEP_MODELS)
    metrics = json.loads(
        (finished_run / "results/kaggle_all/all_subtypes/Original/svm/metrics.json").read_text()
    )
    accuracy = next(c for c in metrics["ci"] if c["metric"] == "accuracy")
    assert accuracy["ci_low"] <= accuracy["value"] <= accuracy["ci_high"]
    assert 0 <= metrics["calibration"]["ece"] <= 1
    proxy = pd.read_csv(
        finished_run / "results/kaggle_all/all_subtypes__proxy/splits.tsv", sep="\t"
    )
    assert (proxy["protocol"] == "proxy").all()
    assert (proxy.groupby("group")["split"].nunique() == 1).all()


def test_every_model_is_retrained_on_each_resplit(finished_run: Path) -> None:
    task = finished_run / "results/kaggle_all/all_subtypes"
    splits = pd.read_csv(task / "splits.tsv", sep="\t").set_index("id")["split"]
    folders = [task / v / m for v in VARIANTS for m in MODELS]
    folders += [task / "Original" / m for m in DEEP_MODELS]
    for folder in folders:
        table = pd.read_csv(folder / "repeats.tsv", sep="\t")
        assert sorted(set(table["split_seed"])) == list(REPEAT_SEEDS), folder
        accuracy = table[table["metric"] == "accuracy"]["value"]
        assert accuracy.between(0, 1).all() and len(accuracy) == len(REPEAT_SEEDS), folder
        for seed in REPEAT_SEEDS:
            predictions = pd.read_csv(folder / f"repeats/seed{seed}/predictions.tsv", sep="\t")
            again = predictions.set_index("id")["split"]
            # The same images, split again: some move between train and test.
            assert set(again.index) == set(splits.index), (folder, seed)
            assert (again != splits[again.index]).any(), (folder, seed)
            test = predictions[predictions["split"] == "test"]
            recorded = table[(table["split_seed"] == seed) & (table["metric"] == "accuracy")]
            assert recorded["value"].item() == pytest.approx((test["true"] == test["pred"]).mean())
    html = (finished_run / "reports/report.html").read_text()
    comparison = html.split('class="table sortable comparison"')[1].split("</table>")[0]
    n = len(REPEAT_SEEDS)
    resplit_cells = re.findall(rf"<td>[01]\.\d{{4}} ± \d\.\d{{4}} \(n={n}\)</td>", comparison)
    assert len(resplit_cells) == len(folders)


def test_snakemake_report_collects_the_registered_outputs(finished_run: Path) -> None:
    report = finished_run / "snakemake_report.html"
    result = snakemake(finished_run, "all", "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text(errors="replace")
    for text in ("Grad-CAM", "feature importance", "segmentation QC", "every task"):
        assert text in html, text


def test_rerun_gives_identical_splits_and_classic_results(finished_run: Path) -> None:
    paths = ["results/kaggle_all/all_subtypes/splits.tsv"] + [
        f"results/kaggle_all/all_subtypes/{v}/{m}/predictions.tsv" for v in VARIANTS for m in MODELS
    ]
    before = {p: (finished_run / p).read_bytes() for p in paths}
    result = snakemake(finished_run, "--cores", "2", "--forcerun", "split", "all")
    assert result.returncode == 0, result.stderr[-4000:]
    for path in paths:
        assert (finished_run / path).read_bytes() == before[path], path


def test_nothing_left_to_do_after_a_finished_run(finished_run: Path) -> None:
    result = snakemake(finished_run, "--cores", "2", "-n", "all")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_model_target_builds_only_that_model(tmp_path: Path, finished_run: Path) -> None:
    shutil.rmtree(finished_run / "results/kaggle_all/all_subtypes/Original/svm")
    result = snakemake(finished_run, "--cores", "2", "-n", "svm")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.MULTILINE))
    assert jobs.get("train_classic") == "1" and jobs.get("evaluate") == "1"
    assert "report" not in jobs and "features" not in jobs
