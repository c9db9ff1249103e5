"""Benchmark: precision and depth chosen together, against each technique alone, on EfficientNet-Lite0.

At each budget, three deployments of EfficientNet-Lite0 (real ImageNet weights, the embedded default's
tiny set and validation folder, onnxruntime on this CPU):
  depth only      `pipeline run --precision fp32`: PRACTISE's blocks dropped and recovered, FP32 ONNX
  precision only  the original network in each INT8 scheme (quantized on the tiny set), no block dropped
  joint           `pipeline run` (--precision auto): a plan per kept precision, the report images choose
Each deployed artefact is scored by top-1 agreement with the FP32 original on images no stage saw: the 91
OpenCV sample photos and the Tux Paint stamps named after ImageNet classes (Debian opencv-doc and
tuxpaint-stamps-default), plus foolbox's 20 photos, which the runs use as their report images (so the
joint figure on them is the one it chose on). Latency ratios are measured end to end against the FP32
original in the same interleaved rounds. Budget-independent stage files are made once and copied into every
later run folder: the FP32 latency table and the recoverability scores (the same in both modes: same tiny set,
seed and settings), and the precision survey (joint runs only).

    python -m benchmarks.precision_and_depth [--budgets 0.9 0.78 0.65 0.5 0.4] [--out DIR] [--replot]
    python -m benchmarks.precision_and_depth --network fashion [--budgets 0.9 0.78 0.65] [--seeds 0 1 2]

`--network fashion` runs the in-domain counterpart (benchmarks/precision_and_depth_fashion.py) and stores it
beside the Lite0 figures in the same files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from benchmarks import precision_and_depth_fashion
from benchmarks.common import RESULTS, machine_info, pyplot, save_figure
from benchmarks.deployments import deployed_logits_of, deployment_cell, run_seeded

BUDGETS = (0.9, 0.78, 0.65, 0.5, 0.4)
FASHION_BUDGETS = (0.9, 0.78, 0.65)


def heldout_sets(cache: Path) -> dict[str, Path]:
    """Folders of held-out images: OpenCV photos, Tux Paint stamps with ImageNet names, foolbox's photos."""
    from benchmarks.lite0_out_of_domain import OPENCV_DOC, build_image_sets

    sets = build_image_sets(cache, smoke=False)
    labelled = sets["labelled"]
    folders = {}
    for name, pattern in (("stamps", "tux_*.jpg"), ("foolbox", "imagenet_*.jpg")):
        folder = cache / f"held-{name}"
        if not folder.exists():
            folder.mkdir(parents=True)
            for image in sorted(labelled.rglob(pattern)):
                shutil.copy(image, folder / image.name)
        folders[name] = folder
    if OPENCV_DOC.exists():
        folders = {"opencv": OPENCV_DOC, **folders}
    return {name: folder for name, folder in folders.items() if any(folder.iterdir())}


def held_out_tensors(folders: dict[str, Path], loaded) -> dict[str, torch.Tensor]:
    from pipeline.data.tiny_set import Preprocessing, eval_tensors, load_image_folder

    prep = Preprocessing(loaded.resolution, loaded.mean, loaded.std)
    return {name: eval_tensors(load_image_folder(folder, loaded.resolution, min_images=1), prep)
            for name, folder in folders.items()}


def agreement_by_set(logits: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((logits[name].argmax(1) == reference[name].argmax(1)).float().mean()) for name in reference}


def run_one(budget: float, precision: str, work: Path, threads: int) -> Path:
    """One `pipeline run` (embedded default), seeded with the budget-independent stage files of its mode."""
    from pipeline.run.config import RunConfig

    mode = "joint" if precision == "auto" else "depth"
    config = RunConfig(budget=str(budget), precision=precision, out=str(work / f"{mode}-{budget}"), threads=threads)
    return run_seeded(config, mode, work, lambda message: print(f"  [{mode} {budget}] {message}", flush=True))


def precision_only(run_dir: Path, loaded, images: dict, reference: dict) -> dict:
    """Every precision of the original the run surveyed (INT8 schemes, OpenVINO): its measured ratio and held-out
    agreement."""
    from pipeline.data.tiny_set import Preprocessing, eval_tensors, load_image_folder
    from pipeline.latency.precision import deployed_logits

    survey = json.loads((run_dir / "precisions.json").read_text())["options"]
    data = json.loads((run_dir / "data.json").read_text())
    prep = Preprocessing(loaded.resolution, loaded.mean, loaded.std)
    calibration = eval_tensors(load_image_folder(Path(data["train_folder"]), loaded.resolution), prep)[:64]
    rows = {}
    for option in survey:
        if option["precision"] == "fp32":
            continue
        logits = {name: deployed_logits(loaded.module, option["precision"], x, calibration)
                  for name, x in images.items()}
        rows[option["precision"]] = {"measured_ratio": option["latency_ratio"], "kept": option["kept"],
                                     "reason": option["reason"], "agreement": agreement_by_set(logits, reference)}
    return rows


def deployment_row(run, images: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                   images_at=None) -> dict:
    """What one `pipeline run` (the `run()` callable) deployed and its held-out agreement, or why it refused
    (`images_at(size)`: the held-out sets at a smaller input size, for a run allowed one)."""
    from pipeline.core.errors import UsageError

    try:
        run_dir = run()
    except UsageError as exc:
        return {"refused": str(exc)}
    logits, info = deployed_logits_of(run_dir, images, images_at)
    return info | {"agreement": agreement_by_set(logits, reference)}


def run_benchmark(budgets: list[float], work_root: Path, threads: int) -> dict:
    from pipeline.models import load_model
    from pipeline.network.evaluation import predict_logits

    work = work_root / "runs"
    loaded = load_model("efficientnet_lite0")
    images = held_out_tensors(heldout_sets(work_root / "images"), loaded)
    reference = {name: predict_logits(loaded.module, x) for name, x in images.items()}
    result = {"machine": machine_info(), "threads": threads, "held_out": {n: len(x) for n, x in images.items()},
              "budgets": {}}
    for budget in budgets:
        row = {mode: deployment_row(lambda: run_one(budget, precision, work, threads), images, reference)
               for mode, precision in (("joint", "auto"), ("depth", "fp32"))}
        result["budgets"][str(budget)] = row
        if "precision_only" not in result and "refused" not in row["joint"]:
            result["precision_only"] = precision_only(work / f"joint-{budget}", loaded, images, reference)
        (work_root / "partial.json").write_text(json.dumps(result, indent=2))
    return result


def best_precision_only(result: dict, budget: float) -> tuple[str, dict] | None:
    """The INT8 scheme a practitioner would pick: the most faithful one that meets the budget."""
    meeting = [(name, row) for name, row in result.get("precision_only", {}).items() if row["measured_ratio"] <= budget]
    if not meeting:
        return None
    return max(meeting, key=lambda item: sum(item[1]["agreement"].values()))


def render(result: dict) -> str:
    sets = list(result["held_out"])
    head = " / ".join(f"{name} ({count})" for name, count in result["held_out"].items())
    m = result["machine"]
    lines = [
        "# Precision and depth chosen together: EfficientNet-Lite0 on this CPU",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']}, torch {m['torch']}, "
        f"{result['threads'] or 'all'} threads. Embedded default tiny set (54 images), report images foolbox's 20 "
        "photos. One seed.",
        f"Top-1 agreement with the FP32 original on held-out images: {head}. Ratio: the deployed artefact's latency "
        "against the FP32 original, measured side by side.",
        "",
        "| budget | depth only (FP32) | precision only (best INT8 scheme that meets it) | joint (`--precision auto`) |",
        "|---|---|---|---|",
    ]
    for budget, row in result["budgets"].items():
        only = best_precision_only(result, float(budget))
        only_text = (f"{only[0]}: ratio {only[1]['measured_ratio']:.3f}, {_agreements(only[1]['agreement'], sets)}"
                     if only else "none meets it")
        lines.append(f"| {budget} | {_cell(row.get('depth'), sets)} | {only_text} | {_cell(row.get('joint'), sets)} |")
    if result.get("note"):
        lines += ["", result["note"]]
    lines += ["", "## INT8 schemes of the original (no block dropped)", "",
              "| scheme | measured ratio | kept by the run | agreement |", "|---|---|---|---|"]
    for name, row in result.get("precision_only", {}).items():
        lines.append(f"| {name} | {row['measured_ratio']:.3f} | {'yes' if row['kept'] else 'no: ' + row['reason']} | "
                     f"{_agreements(row['agreement'], sets)} |")
    if "fashion" in result:
        lines += [""] + precision_and_depth_fashion.render(result["fashion"])
    return "\n".join(lines) + "\n"


def _agreements(agreement: dict, sets: list[str]) -> str:
    return " / ".join(f"{100 * agreement[name]:.1f}" for name in sets)


def _cell(entry: dict | None, sets: list[str]) -> str:
    return deployment_cell(entry, lambda e: _agreements(e["agreement"], sets))


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    figure, ax = plt.subplots(figsize=(6, 4))
    for mode, marker in (("depth", "o"), ("joint", "s")):
        points = [(e["measured_ratio"], sum(e["agreement"].values()) / len(e["agreement"]))
                  for row in result["budgets"].values() if (e := row.get(mode)) and "agreement" in e
                  and e["measured_ratio"] is not None]
        ax.scatter([p[0] for p in points], [100 * p[1] for p in points], marker=marker, label=mode)
    only = [(r["measured_ratio"], sum(r["agreement"].values()) / len(r["agreement"]))
            for r in result.get("precision_only", {}).values()]
    ax.scatter([p[0] for p in only], [100 * p[1] for p in only], marker="^", label="precision only")
    ax.set_xlabel("latency ratio against the FP32 original (measured)")
    ax.set_ylabel("mean top-1 agreement on held-out sets (%)")
    ax.legend()
    save_figure(plt, figure, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=("lite0", "fashion"), default="lite0",
                        help="lite0: EfficientNet-Lite0, held-out photos; fashion: the Fashion-MNIST ResNet teacher")
    parser.add_argument("--budgets", type=float, nargs="+", default=None,
                        help=f"default: {' '.join(map(str, BUDGETS))} (lite0), {' '.join(map(str, FASHION_BUDGETS))} "
                             "(fashion)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "practise-precision-and-depth",
                        help="run folders and image copies (large; not results)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="fashion only: the runs' --seed; seeds already stored for a budget are kept unless run "
                             "again (so `--budgets 0.78 --seeds 1 2` adds two seeds to the stored seed 0)")
    parser.add_argument("--replot", action="store_true", help="redraw the .md and .png from the saved .json")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "precision_and_depth.json"
    if args.replot:
        result = json.loads(saved.read_text())
    elif args.network == "fashion":
        if not saved.exists():
            raise SystemExit(f"{saved} not found: --network fashion adds its section to the Lite0 results. Run "
                             "`python -m benchmarks.precision_and_depth` first, or pass --out with a folder that has it.")
        result = json.loads(saved.read_text())  # the Lite0 figures stay; the fashion section gains these runs
        new = precision_and_depth_fashion.run_benchmark(args.budgets or list(FASHION_BUDGETS), args.work / "fashion",
                                                        args.threads, seeds=tuple(args.seeds))
        result["fashion"] = precision_and_depth_fashion.merge(result.get("fashion"), new | {"machine": machine_info()})
        saved.write_text(json.dumps(result, indent=2))
    else:
        fashion = json.loads(saved.read_text()).get("fashion") if saved.exists() else None
        result = run_benchmark(args.budgets or list(BUDGETS), args.work, args.threads)
        if fashion is not None:
            result["fashion"] = fashion
        saved.write_text(json.dumps(result, indent=2))
    (args.out / "precision_and_depth.md").write_text(render(result))
    plot(result, args.out / "precision_and_depth.png")
    print(render(result))


if __name__ == "__main__":
    main()
