"""Precision and depth on the Fashion-MNIST ResNet teacher: the same three deployments, scored on test labels.

The in-domain counterpart of the Lite0 benchmark (benchmarks/precision_and_depth.py): the ResNet of basic
blocks of benchmarks/fashion_mnist.py (trained once, cached outside git), given to `pipeline run` as a user
would give their own network: `--model benchmarks.fashion_mnist:fashion_resnet56 --weights FILE --resolution 32
--mean 0.286 --std 0.353 --crop-fraction 1`, a tiny set of 100 unlabelled train images and 300 other
unlabelled train images as `--val` (the report images). At each budget:
  depth only      `pipeline run --precision fp32`
  precision only  the original in each INT8 scheme the run surveyed (quantized on the tiny set)
  joint           `pipeline run` (--precision auto)
Each deployed artefact is scored in onnxruntime on the 10,000 test images nothing trained on or chose with:
test accuracy, and top-1 agreement with the FP32 teacher. As in the Lite0 benchmark, the stage files that do not
depend on the budget (FP32 table, scores, survey) are made by the first run and copied into the later ones.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.deployments import deployed_logits_of, deployment_cell, run_seeded

TINY_SET = 100
REPORT_IMAGES = 300
SPEC = "benchmarks.fashion_mnist:fashion_resnet56"


def write_folder(x_uint8: torch.Tensor, indices: np.ndarray, folder: Path) -> Path:
    """PNG files of the given (N, 1, 32, 32) images, gray replicated to RGB, as a user's folder would hold."""
    from PIL import Image

    if not folder.exists():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for i in indices:
            Image.fromarray(x_uint8[int(i), 0].numpy()).convert("RGB").save(partial / f"train_{int(i):05d}.png")
        partial.rename(folder)
    return folder


def prepare(work: Path, log) -> dict:
    """The teacher's state_dict file, the tiny-set and report folders, and the test tensors: what every run shares."""
    from benchmarks.fashion_mnist import DEFAULT_DATA, load_fashion_mnist, normalise, obtain_teacher, padded

    data = load_fashion_mnist(DEFAULT_DATA)
    teacher, meta = obtain_teacher(data, (8, 16, 32), 9, 1, None, log)
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "fashion_teacher.pt"
    if not weights.exists():
        torch.save(teacher.state_dict(), weights)
    x_train = padded(data["train_images"])
    order = np.random.default_rng(0).permutation(len(x_train))
    tiny = write_folder(x_train, order[:TINY_SET], work / "fashion-tiny")
    report = write_folder(x_train, order[1000:1000 + REPORT_IMAGES], work / "fashion-report")
    x_test = normalise(padded(data["test_images"]))
    labels = torch.from_numpy(data["test_labels"].astype(np.int64))
    with torch.no_grad():
        teacher.eval()
        reference = torch.cat([teacher(x_test[i:i + 500]) for i in range(0, len(x_test), 500)])
    return {"teacher": teacher, "meta": meta, "weights": weights, "tiny": tiny, "report": report,
            "x_test": x_test, "labels": labels, "reference": reference}


def run_config(subject: dict, budget: float, precision: str, out: Path, threads: int, seed: int = 0):
    from benchmarks.fashion_mnist import MEAN, STD
    from pipeline.run.config import RunConfig

    return RunConfig(model=SPEC, weights=str(subject["weights"]), data=str(subject["tiny"]),
                     val_data=str(subject["report"]), resolution=32, mean=f"{MEAN}", std=f"{STD}", crop_fraction=1.0,
                     budget=str(budget), precision=precision, out=str(out), threads=threads, seed=seed)


def scores(logits: torch.Tensor, subject: dict) -> dict:
    """Test accuracy and top-1 agreement with the teacher, in [0, 1]."""
    predicted = logits.argmax(1)
    return {"test_accuracy": float((predicted == subject["labels"]).float().mean()),
            "agreement": float((predicted == subject["reference"].argmax(1)).float().mean())}


def deployed(run_dir: Path, subject: dict) -> dict:
    """The run's deployed artefact scored on the test images, with what it deployed."""
    logits, info = deployed_logits_of(run_dir, {"test": subject["x_test"]})
    return info | scores(logits["test"], subject)


def precision_only(run_dir: Path, subject: dict) -> dict:
    """Every INT8 scheme of the teacher the run surveyed: measured ratio, whether kept, test scores."""
    from pipeline.data.tiny_set import Preprocessing, eval_tensors, load_image_folder
    from pipeline.latency.precision import deployed_logits

    from benchmarks.fashion_mnist import MEAN, STD

    survey = json.loads((run_dir / "precisions.json").read_text())["options"]
    prep = Preprocessing(32, (MEAN,) * 3, (STD,) * 3, crop_fraction=1.0)
    calibration = eval_tensors(load_image_folder(subject["tiny"], 32), prep)[:64]
    rows = {}
    for option in survey:
        if option["precision"] == "fp32":
            continue
        logits = deployed_logits(subject["teacher"], option["precision"], subject["x_test"], calibration)
        rows[option["precision"]] = {"measured_ratio": option["latency_ratio"], "kept": option["kept"],
                                     "reason": option["reason"]} | scores(logits, subject)
    return rows


def run_benchmark(budgets: list[float], work: Path, threads: int, log=print, seeds: tuple[int, ...] = (0,)) -> dict:
    """Joint and depth-only runs at each budget and seed, and the INT8 schemes of the teacher alone.

    The seed is the run's `--seed` (scoring and recovery's augmentation and order); the tiny set and the report
    images stay the same. Each seed has its own run folders (its scores differ), `runs` for seed 0."""
    from pipeline.core.errors import UsageError

    work.mkdir(parents=True, exist_ok=True)
    subject = prepare(work, log)
    result = {"teacher": {k: v for k, v in subject["meta"].items() if k not in ("losses", "data_fingerprint")},
              "teacher_accuracy": scores(subject["reference"], subject)["test_accuracy"],
              "tiny_set": TINY_SET, "report_images": REPORT_IMAGES, "test_images": len(subject["labels"]),
              "budgets": {}}
    log(f"teacher {100 * result['teacher_accuracy']:.2f}% test accuracy")
    for budget in budgets:
        row = {"joint": {"by_seed": {}}, "depth": {"by_seed": {}}}
        for seed in seeds:
            runs = work / ("runs" if seed == 0 else f"runs-seed{seed}")
            for mode, precision in (("joint", "auto"), ("depth", "fp32")):
                started = time.monotonic()
                config = run_config(subject, budget, precision, runs / f"{mode}-{budget}", threads, seed)
                try:
                    folder = run_seeded(config, mode, runs, lambda message, m=mode: log(
                        f"  [fashion {m} {budget} seed {seed}] {message}"))
                except UsageError as exc:
                    row[mode]["by_seed"][str(seed)] = {"refused": str(exc)}
                    continue
                row[mode]["by_seed"][str(seed)] = deployed(folder, subject) | {
                    "run_s": round(time.monotonic() - started, 1)}
            joint = row["joint"]["by_seed"][str(seed)]
            if "precision_only" not in result and "refused" not in joint:
                result["precision_only"] = precision_only(runs / f"joint-{budget}", subject)
        result["budgets"][str(budget)] = row
    return result


def by_seed(entry: dict | None) -> dict[str, dict]:
    """A mode's entries per seed (results stored before seeds were recorded hold seed 0's entry itself)."""
    if entry is None:
        return {}
    return entry["by_seed"] if "by_seed" in entry else {"0": entry}


def merge(saved: dict | None, new: dict) -> dict:
    """`new` with the seeds and budgets of `saved` it did not run kept (a seed run again is replaced)."""
    if not saved:
        return new
    merged = {**saved, **{k: v for k, v in new.items() if k not in ("budgets", "precision_only")}}
    if "precision_only" not in saved and "precision_only" in new:
        merged["precision_only"] = new["precision_only"]
    budgets = {b: dict(row) for b, row in saved.get("budgets", {}).items()}
    for budget, row in new["budgets"].items():
        old = budgets.setdefault(budget, {})
        for mode, entry in row.items():
            old[mode] = {"by_seed": {**by_seed(old.get(mode)), **by_seed(entry)}}
    merged["budgets"] = budgets
    return merged


def best_precision_only(result: dict, budget: float) -> tuple[str, dict] | None:
    """The INT8 scheme a practitioner would pick: the most accurate one that meets the budget."""
    meeting = [(n, r) for n, r in result.get("precision_only", {}).items() if r["measured_ratio"] <= budget]
    return max(meeting, key=lambda item: item[1]["test_accuracy"]) if meeting else None


def render(result: dict) -> list[str]:
    lines = [f"## Fashion-MNIST ResNet teacher (in domain): test accuracy / agreement with the teacher", "",
             f"Teacher: ResNet of basic blocks (benchmarks/fashion_mnist.py, 25 candidate blocks), "
             f"{100 * result['teacher_accuracy']:.2f}% on the {result['test_images']:,} test images. "
             f"`pipeline run` on it as a user's own network, {result['tiny_set']} unlabelled train images as the "
             f"tiny set, {result['report_images']} other unlabelled train images as `--val`. Each deployed artefact "
             "scored in onnxruntime on the test images; ratio measured by the run against the FP32 teacher.", "",
             "| budget | depth only (FP32) | precision only (most accurate INT8 scheme that meets it) | joint |",
             "|---|---|---|---|"]
    for budget, row in result["budgets"].items():
        only = best_precision_only(result, float(budget))
        only_text = (f"{only[0]}: ratio {only[1]['measured_ratio']:.3f}, {_scores(only[1])}" if only
                     else "none meets it")
        lines.append(f"| {budget} | {_cell(row.get('depth'))} | {only_text} | {_cell(row.get('joint'))} |")
    lines += ["", "INT8 schemes of the teacher (no block dropped):", "",
              "| scheme | measured ratio | kept by the run | test accuracy / agreement |", "|---|---|---|---|"]
    for name, row in result.get("precision_only", {}).items():
        lines.append(f"| {name} | {row['measured_ratio']:.3f} | {'yes' if row['kept'] else 'no: ' + row['reason']} | "
                     f"{_scores(row)} |")
    return lines


def _scores(entry: dict) -> str:
    return f"{100 * entry['test_accuracy']:.2f}% / {100 * entry['agreement']:.1f}%"


def _cell(entry: dict | None) -> str:
    seeds = by_seed(entry)
    if len(seeds) <= 1:
        return deployment_cell(next(iter(seeds.values()), None), _scores)
    done = {s: e for s, e in sorted(seeds.items()) if "refused" not in e}
    if not done:
        return deployment_cell(next(iter(seeds.values())), _scores)
    accuracy = np.array([100 * e["test_accuracy"] for e in done.values()])
    agreement = np.array([100 * e["agreement"] for e in done.values()])
    blocks = "/".join(str(len(e["dropped"])) for e in done.values())
    ratios = "/".join(f"{e['measured_ratio']:.3f}" for e in done.values())
    precisions = "/".join(dict.fromkeys(e["precision"] for e in done.values()))
    missed = [s for s, e in done.items() if e.get("meets_budget") is False]
    if missed:
        ratios += f" **(seed {', '.join(missed)} misses the budget)**"
    return (f"{len(done)} seeds: {precisions}, {blocks} blocks, ratio {ratios}: **{accuracy.mean():.2f} ± "
            f"{accuracy.std(ddof=1):.2f}%** / {agreement.mean():.1f}% (seeds: "
            f"{' / '.join(f'{a:.2f}' for a in accuracy)})")
