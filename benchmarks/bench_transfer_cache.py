"""Frozen-backbone transfer learning: cached backbone features vs recomputing them every epoch.

Run from the repository root after the workflow has written the ALL manifest and splits:
    .venv/bin/python benchmarks/bench_transfer_cache.py [--image-size 96] [--epochs 15]

Both arms train the same DenseNet-201 transfer model (frozen backbone, global pooling, Dense 128
head) for the same fixed number of epochs (no early stop) on the shared split of the real ALL
images. ImageNet weights for DenseNet-201 cannot be downloaded here, so both arms use the same
seeded random initialisation (weights=None); the comparison is of speed and of agreement between
the arms, not of the accuracy a pretrained DenseNet-201 would reach.
Also measures each backbone's feature throughput (images/s, batch 32, 224 px) on this machine.
Results: printed as Markdown and written to benchmarks/out/transfer_cache.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

import numpy as np  # noqa: E402

from leukbench.deep.architectures import build_backbone  # noqa: E402
from leukbench.deep.train import configure_tensorflow, train_deep  # noqa: E402
from leukbench.metrics import evaluate  # noqa: E402
from leukbench.smk import read_tsv  # noqa: E402

CLASSES = ["Benign", "Early", "Pre", "Pro"]
COST = [[0, 10, 20, 30], [10, 0, 15, 25], [20, 15, 0, 10], [30, 25, 10, 0]]


def backbone_throughput(backbone: str, weights: str | None, n: int = 64) -> float:
    model = build_backbone(
        {
            "family": "transfer",
            "backbone": backbone,
            "weights": weights,
            "image_size": 224,
            "head": {"pooling": "avg"},
        }
    )
    images = np.random.default_rng(0).uniform(0, 255, (n, 224, 224, 3)).astype("float32")
    model.predict(images[:32], batch_size=32, verbose=0)  # build and warm up
    start = time.perf_counter()
    model.predict(images, batch_size=32, verbose=0)
    return n / (time.perf_counter() - start)


def run_arm(images, splits, spec, seed: int, cache: Path | None) -> dict:
    start = time.perf_counter()
    _, predictions, info, history = train_deep(
        images, splits, CLASSES, spec, seed, cache_path=cache, threads=2
    )
    seconds = time.perf_counter() - start
    test = evaluate(predictions, CLASSES, COST)["test"]
    return {
        "seconds": seconds,
        "epochs": len(history),
        "test_accuracy": test["accuracy"],
        "test_total_cost": test["total_cost"],
        "cached": bool(info.get("cached")),
        "predictions": predictions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    configure_tensorflow(args.seed, threads=2)
    results: dict = {"image_size": args.image_size, "epochs": args.epochs}
    if not args.skip_throughput:
        results["throughput_224px"] = {
            name: backbone_throughput(name, "imagenet" if name == "efficientnet_lite0" else None)
            for name in ("efficientnet_lite0", "resnet50", "densenet201", "convnext_tiny", "vgg16")
        }
    manifest = read_tsv(REPO / "results/kaggle_all/manifest.tsv")
    splits = read_tsv(REPO / "results/kaggle_all/splits.tsv")
    images = manifest[manifest["variant"] == "Original"]
    spec = {
        "family": "transfer",
        "backbone": "densenet201",
        "weights": None,
        "image_size": args.image_size,
        "batch_size": 32,
        "epochs": args.epochs,
        "learning_rate": 1e-3,
        "patience": args.epochs + 1,
        "augmentation": "none",
        "class_weight": "balanced",
        "trainable_layers": 0,
        "head": {"pooling": "avg", "dense": [128], "dropout": 0.2, "l2": 0.0, "batch_norm": False},
    }
    with tempfile.TemporaryDirectory() as scratch:
        cached = run_arm(
            images, splits, {**spec, "cache_features": True}, args.seed, Path(scratch) / "cache.npz"
        )
    uncached = run_arm(images, splits, {**spec, "cache_features": False}, args.seed, None)
    agree = float(
        (
            cached.pop("predictions")["pred"].to_numpy()
            == uncached.pop("predictions")["pred"].to_numpy()
        ).mean()
    )
    results |= {
        "cached": cached,
        "uncached": uncached,
        "speedup": uncached["seconds"] / cached["seconds"],
        "prediction_agreement": agree,
    }
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "transfer_cache.json").write_text(json.dumps(results, indent=2))
    print(f"DenseNet-201 frozen, {args.image_size} px, {args.epochs} epochs, 2 cores")
    print("| arm | seconds | epochs | test acc | test cost |\n|---|---|---|---|---|")
    for arm in ("cached", "uncached"):
        r = results[arm]
        print(
            f"| {arm} | {r['seconds']:.0f} | {r['epochs']} | {r['test_accuracy']:.4f} "
            f"| {r['test_total_cost']:.0f} |"
        )
    print(f"speed-up {results['speedup']:.1f}x; same prediction on {100 * agree:.1f} % of images")
    for name, rate in results.get("throughput_224px", {}).items():
        print(f"| {name} | {rate:.1f} images/s |")


if __name__ == "__main__":
    main()
