"""Benchmark: `pipeline run` in one process and under `torchrun --nproc_per_node 2`, side by side.

Each run is the real command line (gloo on the CPU, OMP_NUM_THREADS=1 so every process has one thread),
1-process and 2-process runs interleaved (their order alternates per repeat) so that the machine's load
falls on both alike. Per run: wall time of scoring (recoverability_s) and recovery (recovery_s) from the
run folder's timings.json, the scores, the chosen blocks, and the held-out agreement / accuracy.

Scoring is split over the ranks by expected cost, so its wall time should halve (scaling efficiency =
t1 / (2 t2)). Recovery runs the same number of steps with each rank drawing its own batch: 2 processes
see twice the images per step (effective batch 2 x --batch-size) in about the time one process takes,
so its efficiency is the throughput ratio: (2 images per step / t2) / (2 x images per step / t1) = t1 / t2.

Nothing is timed for latency: the runs select from a latency table recorded "elsewhere" (a GPU, so no
rank ever profiles or measures here) whose per-block savings are proportional to each block's MACs.

    python -m benchmarks.distributed [--models fashion lite0] [--repeats 2] [--out DIR] [--replot]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, machine_info
from pipeline.core.atomic import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
NAME = "distributed"
TEACHER_EPOCHS, TEACHER_IMAGES = 1, 15000  # a quickly trained teacher (benchmarks/fashion_mnist.py): timing, not accuracy


def _fashion_case(work: Path, tiny: int, val: int, seed: int) -> dict:
    """The Fashion-MNIST teacher with `tiny` training images as the tiny set and `val` labelled test images."""
    from PIL import Image

    from benchmarks.fashion_mnist import (
        DEFAULT_DATA,
        MEAN,
        STD,
        load_fashion_mnist,
        obtain_teacher,
        padded,
    )

    data = load_fashion_mnist(DEFAULT_DATA)
    _, meta = obtain_teacher(data, (8, 16, 32), 9, TEACHER_EPOCHS, TEACHER_IMAGES)
    rng = np.random.default_rng(seed)
    for folder, images, labels, count in (("tiny", "train_images", None, tiny), ("val", "test_images", "test_labels", val)):
        x = padded(data[images])
        for n, i in enumerate(rng.choice(len(x), count, replace=False)):
            target = work / folder / (str(int(data[labels][i])) if labels else "")
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i, 0].numpy()).convert("RGB").save(target / f"{n:04d}.png")
    return {"model": "benchmarks.fashion_mnist:fashion_resnet56", "args": [
        "--weights", meta["path"], "--resolution", "32", "--mean", str(MEAN), "--std", str(STD), "--crop-fraction",
        "1.0", "--data", str(work / "tiny"), "--val", str(work / "val")],
        "about": f"Fashion-MNIST CIFAR ResNet-56 (widths 8/16/32; teacher trained {TEACHER_EPOCHS} epoch on "
                 f"{TEACHER_IMAGES} images), {tiny} tiny-set images, {val} labelled test images for the report"}


def _lite0_case(work: Path, tiny: int, val: int, seed: int) -> dict:
    return {"model": "efficientnet_lite0", "args": [],
            "about": "EfficientNet-Lite0 (ImageNet weights) on the embedded default tiny set and its held-out images"}


def _smoke_case(work: Path, tiny: int, val: int, seed: int) -> dict:
    """The tests' tiny ResNet with random weights on random textures: checks the benchmark itself, in a minute."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (work / "tiny").mkdir(parents=True, exist_ok=True)
    for i in range(16):
        pixels = np.clip(rng.random((1, 1, 3)) * 255 + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(work / "tiny" / f"{i:03d}.png")
    return {"model": "tests.tiny_models:tiny_resnet", "about": "smoke test: the tests' tiny ResNet, random weights",
            "args": ["--resolution", "32", "--allow-random-weights", "--data", str(work / "tiny"), "--scoring-steps",
                     "3", "--recovery-steps", "4", "--batch-size", "4"]}


CASES = {"fashion": _fashion_case, "lite0": _lite0_case, "smoke": _smoke_case}


def _table(model_args: list[str], model: str, path: Path) -> Path:
    """A latency table 'recorded on a GPU elsewhere': savings proportional to each block's MACs, 10 ms in all."""
    from pipeline.models import load_model
    from pipeline.network.blocks import analyse
    from profilers.fingerprint import DeviceFingerprint
    from profilers.stats import summarize
    from profilers.table import LatencyTable

    args = dict(zip(model_args[::2], model_args[1::2]))
    loaded = load_model(model, args.get("--weights"), int(args["--resolution"]) if "--resolution" in args else None)
    structure = analyse(loaded.module, loaded.resolution)
    full = 10.0
    fp = DeviceFingerprint("NVIDIA L4 (elsewhere)", "gpu", "8.9", "cuda-13.0", "torch", "2.14.1", "fp32", 1,
                           loaded.resolution, 0, "2.14.1", "x86_64")
    savings = {c.name: summarize([full * c.macs / structure.macs_total] * 3) for c in structure.candidates}
    table = LatencyTable(loaded.spec, loaded.architecture_hash(), fp, summarize([full] * 3), savings, {"rounds": 3},
                         "2026-12-02T00:00:00Z")
    path.write_text(json.dumps(table.to_dict()))
    return path


def _run(procs: int, case: dict, common: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launcher = ([sys.executable, "-m", "pipeline"] if procs == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
                 "-m", "pipeline"])
    command = [*launcher, "run", "--model", case["model"], *case["args"], *common, "--out", str(out), "--overwrite"]
    start, load_before = time.monotonic(), os.getloadavg()[0]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, load_after = time.monotonic() - start, os.getloadavg()[0]
    if done.returncode != 0:
        raise SystemExit(f"{procs}-process run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    read = lambda name: json.loads((out / name).read_text())  # noqa: E731
    timings, recovery, report = read("timings.json"), read("recovery.json"), read("report.json")
    ev = report["evaluation"]["report"]
    return {
        "procs": procs, "wall_s": round(wall, 1), "load_1min": [round(load_before, 1), round(load_after, 1)], "scoring_s": timings["recoverability_s"],
        "recovery_s": timings["recovery_s"], "dropped": read("selection.json")["dropped"],
        "scores": {b: r["recoverability"] for b, r in read("recoverability.json")["blocks"].items()},
        "effective_batch": recovery.get("effective_batch", recovery["settings"]["fit"]["batch_size"]),
        "kept": recovery["kept"], "best_step": recovery["best_step"],
        "selection_kl_after": recovery["selection_kl_after"], "report_images": ev["images"],
        "agreement": {n: ev[n]["top1_agreement"] for n in ("unrecovered", "recovered")},
        "accuracy": {n: ev[n].get("student_top1") for n in ("unrecovered", "recovered")},
        "teacher_accuracy": ev["recovered"].get("teacher_top1"),
    }


def run_case(name: str, args) -> dict:
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    case = CASES[name](work, args.tiny, args.val, 0)
    table = _table(case["args"], case["model"], work / "table.json")
    common = ["--target", "gpu", "--backend", "torch", "--precision", "fp32", "--train-device", "cpu",
              "--latency-table", str(table), "--latency-budget", str(args.budget), "--export", "torchscript"]
    if args.scoring_steps is not None:
        common += ["--scoring-steps", str(args.scoring_steps)]
    if args.recovery_steps is not None:
        common += ["--recovery-steps", str(args.recovery_steps)]
    runs = []
    for repeat in range(args.repeats):
        for procs in ((1, 2) if repeat % 2 == 0 else (2, 1)):  # interleaved: the load falls on both alike
            print(f"{name}: repeat {repeat + 1}/{args.repeats}, {procs} process(es)", flush=True)
            runs.append({"repeat": repeat, **_run(procs, case, common, work / f"run{procs}")})
    return {"about": case["about"], "command": args.command, "settings": common, "runs": runs,
            "summary": summarise(runs)}


def summarise(runs: list[dict]) -> dict:
    one = [r for r in runs if r["procs"] == 1]
    two = [r for r in runs if r["procs"] == 2]
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    scoring = med(one, "scoring_s") / med(two, "scoring_s")
    recovery = med(one, "recovery_s") / med(two, "recovery_s")
    return {
        "scores_identical": all(r["scores"] == runs[0]["scores"] for r in runs),
        "selections_identical": all(r["dropped"] == runs[0]["dropped"] for r in runs),
        "scoring_speedup": round(scoring, 2), "scoring_efficiency": round(scoring / 2, 2),
        "recovery_wall_ratio": round(recovery, 2), "recovery_throughput_efficiency": round(recovery, 2),
    }


def render(result: dict) -> str:
    lines = [f"# {NAME}: one process against `torchrun --nproc_per_node 2` (gloo, 1 thread per process)", "",
             f"Machine: {result['machine_text']}. {result['load_note']}", "",
             "Each run is the real command line (`python -m pipeline run ...`, or `python -m torch.distributed.run "
             "--standalone --nproc_per_node 2 -m pipeline run ...`), OMP_NUM_THREADS=1, the 1-process and 2-process "
             "runs alternating their order per repeat. Scoring and recovery seconds are the run folder's timings "
             "(rank 0's, which include waiting for the slowest rank). The latency table is one 'recorded "
             "elsewhere' (a GPU fingerprint, each block's saving proportional to its MACs), so nothing is timed and "
             "no rank profiles. Scaling efficiency: scoring t1 / (2 t2); recovery runs the same steps with twice the "
             "images per step on 2 processes, so its throughput efficiency is t1 / t2.", ""]
    for name, case in result["cases"].items():
        s = case["summary"]
        lines += [f"## {name}: {case['about']}", "", f"Command: `{case.get('command', result['command'])}`.", "",
                  "| repeat | processes | scoring s | recovery s | run wall s | effective batch | dropped | kept "
                  "(best step) | agreement unrecovered -> recovered | accuracy unrecovered -> recovered |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in case["runs"]:
            acc = r["accuracy"]
            acc_text = "n/a" if acc["recovered"] is None else \
                f"{100 * acc['unrecovered']:.1f}% -> {100 * acc['recovered']:.1f}% (original " \
                f"{100 * r['teacher_accuracy']:.1f}%)"
            lines.append(f"| {r['repeat'] + 1} | {r['procs']} | {r['scoring_s']:.1f} | {r['recovery_s']:.1f} | "
                         f"{r['wall_s']:.0f} | {r['effective_batch']} | {len(r['dropped'])}: {', '.join(r['dropped'])} | "
                         f"{r['kept']} ({r['best_step']}) | {100 * r['agreement']['unrecovered']:.1f}% -> "
                         f"{100 * r['agreement']['recovered']:.1f}% ({r['report_images']} images) | {acc_text} |")
        lines += ["", f"- Scores identical in every run (bit for bit): **{s['scores_identical']}**; selections "
                      f"identical: **{s['selections_identical']}**.",
                  f"- Scoring: speedup {s['scoring_speedup']}x with 2 processes, scaling efficiency "
                  f"**{100 * s['scoring_efficiency']:.0f}%** (median times).",
                  f"- Recovery: same steps, twice the images per step with 2 processes; wall-time ratio "
                  f"{s['recovery_wall_ratio']}x, throughput efficiency **{100 * s['recovery_throughput_efficiency']:.0f}%**.",
                  ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CASES), default=["fashion"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", type=int, default=100, help="Fashion-MNIST tiny-set images")
    parser.add_argument("--val", type=int, default=500, help="Fashion-MNIST labelled test images for the report")
    parser.add_argument("--budget", type=float, default=0.78)
    parser.add_argument("--scoring-steps", type=int, default=None, help="default: the fast preset's (30)")
    parser.add_argument("--recovery-steps", type=int, default=None, help="default: the fast preset's (200)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/practise-distributed-benchmark"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--load-note", default="The machine was shared and loaded while this ran: absolute times "
                        "are not representative; the ratios come from interleaved runs.")
    parser.add_argument("--replot", action="store_true", help="only rewrite the .md from the saved .json")
    args = parser.parse_args(argv)
    args.command = "python -m benchmarks.distributed " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.replot:
        result = json.loads((args.out / f"{NAME}.json").read_text())
    else:
        existing = json.loads((args.out / f"{NAME}.json").read_text()) if (args.out / f"{NAME}.json").exists() else {}
        machine = machine_info()
        result = {"benchmark": NAME, "command": args.command,
                  "machine": machine, "machine_text": _machine_text(machine), "load_note": args.load_note,
                  "cases": existing.get("cases", {})}
        for name in args.models:
            result["cases"][name] = run_case(name, args)
            write_json_atomic(args.out / f"{NAME}.json", result)
    write_text_atomic(args.out / f"{NAME}.md", render(result))
    print(render(result))
    return result


def _machine_text(machine: dict) -> str:
    return f"{machine.get('cpu') or 'CPU'}, {machine.get('cores', '?')} logical cores, torch {machine.get('torch')}"


if __name__ == "__main__":
    main()
