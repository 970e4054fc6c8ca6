"""Throughput of ingestion, segmentation and features, and wall time of the classic branch.

Run from the repository root:  .venv/bin/python benchmarks/bench_classic.py [--jobs 2]
Targets on 2 cores: segmentation + features >= 100 images/s; ingest -> report <= 5 minutes.
Results are printed as a Markdown table and written to benchmarks/out/classic.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402
from workflow_helpers import require_kaggle_all, snakemake, write_config  # noqa: E402

from leukbench.ingest import ingest  # noqa: E402
from leukbench.steps import build_splits, compute_features, run_segmentation  # noqa: E402


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--skip-workflow", action="store_true")
    args = parser.parse_args()
    data = require_kaggle_all()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    dataset = config["datasets"]["kaggle_all"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (manifest, _), seconds = timed(
            ingest, "kaggle_all", data, dataset["variants"], dataset["classes"], n_jobs=args.jobs
        )
        rows.append(("ingest (decode + sha256, both variants)", len(manifest), seconds))
        images = manifest[manifest["variant"] == "Original"]
        _, seconds = timed(
            run_segmentation,
            images,
            config["segmentation"],
            config["image_size"],
            scratch / "masks",
            scratch / "seg",
            n_jobs=args.jobs,
        )
        rows.append(("segmentation (Original)", len(images), seconds))
        clusters = images[["id", "label"]].assign(
            cluster=images["id"], cluster_size=1, keep=True, conflict=False
        )
        splits, _ = build_splits(
            manifest, clusters, dataset["classes"], config["split"], collapse=False
        )
        _, seconds = timed(
            compute_features,
            images,
            splits,
            scratch / "masks",
            config["features"],
            n_jobs=args.jobs,
        )
        rows.append(("features (Original)", len(splits), seconds))
        seg_rate = rows[1][1] / rows[1][2]
        feat_rate = rows[2][1] / rows[2][2]
        combined = 1.0 / (1.0 / seg_rate + 1.0 / feat_rate)

        workflow_seconds = None
        if not args.skip_workflow:
            workdir = scratch / "workflow"
            dataset["path"] = str(data)
            # The classic branch only: the deep models have their own benchmark.
            config["models"] = {m: config["models"][m] for m in ("svm", "xgboost")}
            write_config(workdir, config)
            start = time.perf_counter()
            result = snakemake(workdir, "--cores", str(args.jobs), "all", timeout=1800)
            if result.returncode != 0:
                raise RuntimeError(f"workflow failed:\n{result.stderr[-3000:]}")
            workflow_seconds = time.perf_counter() - start

    print("| step | images | seconds | images/s |\n|---|---|---|---|")
    for name, count, seconds in rows:
        print(f"| {name} | {count} | {seconds:.1f} | {count / seconds:.0f} |")
    print(f"| segmentation + features (combined) | | | {combined:.0f} |")
    if workflow_seconds is not None:
        print(
            f"| whole classic branch, ingest -> report (snakemake, {args.jobs} cores) "
            f"| 3256 x 2 variants | {workflow_seconds:.0f} | |"
        )
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "classic.json").write_text(
        json.dumps(
            {
                "cpu": platform.processor() or platform.machine(),
                "cores_used": args.jobs,
                "os_cpu_count": os.cpu_count(),
                "steps": [{"step": n, "images": c, "seconds": s} for n, c, s in rows],
                "segmentation_plus_features_images_per_s": combined,
                "workflow_seconds": workflow_seconds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
