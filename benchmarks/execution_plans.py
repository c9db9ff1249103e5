"""Benchmark: the joint plan against every single execution lever, on EfficientNet-Lite0 on this CPU.

At each budget, each lever a practitioner could pull alone, and `pipeline run` (the default: `--backend auto`,
`--precision auto`), all against the FP32 original in onnxruntime (the budget's reference):
  onnxruntime INT8   the most faithful static INT8 scheme of the original that meets the budget
  OpenVINO BF16      the original in OpenVINO, BF16 inference (where the CPU has native BF16)
  OpenVINO INT8      the original quantized by NNCF on the tiny set, in OpenVINO
  depth only         `pipeline run --backend onnxruntime --precision fp32`: PRACTISE's blocks dropped and recovered
  resolution only    the original fed a smaller input (its own preprocessing at that size), FP32 onnxruntime:
                     the largest of RESOLUTIONS that meets the budget
  joint              `pipeline run`
  joint, sized       `pipeline run --min-resolution 128`: input size planned beside runtime, precision and depth
Latency ratios: the precision levers from the joint run's survey (one interleaved measurement of the original in
every precision), the resolution lever from one interleaved measurement of its own, the two runs from their
shipped artefact timed beside the original. Agreement: top-1 agreement with the FP32 original on held-out images
no stage saw (OpenCV photos, Tux Paint stamps with ImageNet names) and foolbox's 20 photos (the runs' report
images). The rule: the joint plan meets every budget and agrees at least as well as the best single lever that
meets it, within one image per set (NOISE); the table flags each budget where it does not. The default run may not
change the input size, so its rule leaves the resolution lever out; the sized run's rule counts every lever.

    python -m benchmarks.execution_plans [--budgets 0.9 0.78 0.65 0.55 0.5 0.4] [--threads 2] [--replot]
    python -m benchmarks.execution_plans --rerun --budgets 0.5   # rerun cells, merged into the saved results
    python -m benchmarks.execution_plans --rerun --modes sized    # add the sized run's column at every budget
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, machine_info
from benchmarks.precision_and_depth import (
    agreement_by_set,
    deployment_row,
    held_out_tensors,
    heldout_sets,
    precision_only,
    run_seeded,
)

BUDGETS = (0.9, 0.78, 0.65, 0.55, 0.5, 0.4)
RESOLUTIONS = (192, 160, 128)
LEVERS = ("onnxruntime INT8", "OpenVINO BF16", "OpenVINO INT8", "depth only", "resolution only")
MODES = ("joint", "depth", "sized")
MIN_RESOLUTION = 128  # the sized run's --min-resolution: the smallest of RESOLUTIONS
# the levers each run's rule compares it with: the default run may not change the input size
RIVALS = {"joint": LEVERS[:-1], "sized": LEVERS}
# the joint plan may agree this much less than a single lever (mean over the sets) and still count as "as well":
# about one image of the smallest held-out set of 91 images
NOISE = 0.011
# a shipped file this close over the budget cannot be told from it (the run's own WITHIN_NOISE): it counts as meeting
RATIO_NOISE = 0.01


def run_mode(budget: float, mode: str, work: Path, threads: int) -> Path:
    from pipeline.run.config import RunConfig

    backend, precision = ("onnxruntime", "fp32") if mode == "depth" else ("auto", "auto")
    config = RunConfig(budget=str(budget), precision=precision, backend=backend, threads=threads,
                       out=str(work / f"{mode}-{budget}"), min_resolution=MIN_RESOLUTION if mode == "sized" else None)
    return run_seeded(config, mode, work, lambda message: print(f"  [{mode} {budget}] {message}", flush=True))


def resolution_levers(folders: dict[str, Path], reference: dict, threads: int) -> dict:
    """The original at each of RESOLUTIONS, FP32 in onnxruntime: timed beside the 224 px original in one
    interleaved measurement, agreement with the 224 px original's predictions."""
    from exporters.onnx_file import export_onnx
    from pipeline.latency.profiling import measure_variants
    from pipeline.models import load_model
    from pipeline.network.evaluation import predict_logits
    from profilers import ProfileSettings, get_profiler

    rows: dict[str, dict] = {}
    files: dict[int, Path] = {}
    with tempfile.TemporaryDirectory(prefix="practise-resolution-") as tmp:
        for resolution in (224, *RESOLUTIONS):
            loaded = load_model("efficientnet_lite0", resolution=resolution)
            files[resolution] = export_onnx(loaded.module, torch.randn(1, 3, resolution, resolution),
                                            Path(tmp) / f"lite0-{resolution}.onnx")
            if resolution != 224:
                images = held_out_tensors(folders, loaded)
                logits = {name: predict_logits(loaded.module, x) for name, x in images.items()}
                rows[str(resolution)] = {"agreement": agreement_by_set(logits, reference)}
        settings = ProfileSettings(threads=threads, time_cap_s=60)
        with get_profiler("cpu", "onnxruntime", settings) as profiler:
            rounds = measure_variants({str(r): f for r, f in files.items()}, profiler, reference="224")
    for resolution in RESOLUTIONS:
        rows[str(resolution)]["measured_ratio"] = rounds.ratio(str(resolution), "224")
    return rows


def run_benchmark(budgets: list[float], work_root: Path, threads: int, resolution: dict | None = None,
                  modes: tuple[str, ...] = MODES) -> dict:
    from pipeline.models import load_model
    from pipeline.network.evaluation import predict_logits

    work = work_root / "runs"
    loaded = load_model("efficientnet_lite0")
    folders = heldout_sets(work_root / "images")
    images = held_out_tensors(folders, loaded)
    reference = {name: predict_logits(loaded.module, x) for name, x in images.items()}
    result: dict[str, Any] = {
        "machine": machine_info(), "threads": threads, "held_out": {n: len(x) for n, x in images.items()},
        "budgets": {}, "resolution": resolution or resolution_levers(folders, reference, threads)}
    for budget in budgets:
        def images_at(size: int) -> dict:
            return held_out_tensors(folders, load_model("efficientnet_lite0", resolution=size))

        row = {mode: deployment_row(lambda: run_mode(budget, mode, work, threads), images, reference, images_at)
               for mode in modes}
        result["budgets"][str(budget)] = row
        if "precisions" not in result and "joint" in row and "refused" not in row["joint"]:
            # every precision of the original the joint run surveyed (onnxruntime's and OpenVINO's alike)
            result["precisions"] = precision_only(work / f"joint-{budget}", loaded, images, reference)
        (work_root / "partial.json").write_text(json.dumps(result, indent=2))
    return result


def _mean(agreement: dict) -> float:
    return sum(agreement.values()) / len(agreement)


def single_levers(result: dict, budget: float) -> dict[str, dict | None]:
    """Each lever's best deployment that meets `budget` (the most faithful), or None."""
    precisions = result.get("precisions", {})

    def best(rows: dict, label) -> dict | None:
        meeting = [row | {"what": label(name)} for name, row in rows.items() if row["measured_ratio"] <= budget]
        return max(meeting, key=lambda row: _mean(row["agreement"])) if meeting else None

    depth = result["budgets"].get(str(budget), {}).get("depth")
    return {
        "onnxruntime INT8": best({n: r for n, r in precisions.items() if n.startswith("int8")}, str),
        "OpenVINO BF16": best({n: r for n, r in precisions.items() if n == "openvino-bf16"}, str),
        "OpenVINO INT8": best({n: r for n, r in precisions.items() if n == "openvino-int8"}, str),
        "depth only": depth if depth and "agreement" in depth and depth.get("meets_budget") else None,
        "resolution only": best(result.get("resolution", {}), lambda r: f"{r} px"),
    }


def rule_holds(result: dict, budget: float, mode: str = "joint") -> tuple[bool, str]:
    """Whether the run (`mode`) meets the budget and agrees at least as well as every single lever it may pull that
    meets it."""
    joint = result["budgets"][str(budget)].get(mode)
    if not joint or "agreement" not in joint:
        return False, "the run did not finish"
    if joint.get("meets_budget") is False and joint["measured_ratio"] > budget + RATIO_NOISE:
        return False, f"its shipped file measured {joint['measured_ratio']:.3f}, over the budget"
    rivals = {name: row for name, row in single_levers(result, budget).items()
              if row is not None and name in RIVALS[mode]}
    better = [name for name, row in rivals.items() if _mean(row["agreement"]) > _mean(joint["agreement"]) + NOISE]
    if better:
        return False, f"{', '.join(better)} agreed more"
    return True, "holds"


def _agreements(agreement: dict, sets: list[str]) -> str:
    return " / ".join(f"{100 * agreement[name]:.1f}" for name in sets)


def _lever_cell(row: dict | None, sets: list[str]) -> str:
    if row is None:
        return "none meets it"
    ratio = row.get("measured_ratio")
    what = row.get("what") or f"{len(row.get('dropped', []))} blocks"
    return f"{what}: {'n/a' if ratio is None else f'{ratio:.3f}'}, {_agreements(row['agreement'], sets)}"


def _joint_cell(entry: dict | None, sets: list[str]) -> str:
    if entry is None:
        return "not run"
    if "refused" in entry:
        return f"refused: {entry['refused'][:200]}"
    ratio = "n/a" if entry["measured_ratio"] is None else f"{entry['measured_ratio']:.3f}"
    size = f" at {entry['input_resolution']} px" if entry.get("input_resolution") else ""
    return (f"{entry['precision']}{size}, {len(entry['dropped'])} blocks: {ratio}, "
            f"{_agreements(entry['agreement'], sets)}")


def render(result: dict) -> str:
    sets = list(result["held_out"])
    head = " / ".join(f"{name} ({count})" for name, count in result["held_out"].items())
    m = result["machine"]
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in m.get("cpu_flags", {}).items())
    lines = [
        "# Every execution lever against the joint plan: EfficientNet-Lite0 on this CPU",
        "",
        f"Machine: {m['cpu']} ({flags}), {m['cores']} cores, onnxruntime {m['onnxruntime']}, OpenVINO "
        f"{m.get('openvino')}, torch {m['torch']}, {result['threads'] or 'all'} threads. Embedded default tiny set, "
        "report images foolbox's 20 photos. One seed. Command: `python -m benchmarks.execution_plans`.",
        f"Each cell: what ships, its latency ratio against the FP32 original in onnxruntime (measured side by side), "
        f"top-1 agreement with the FP32 original on held-out images: {head}.",
        "",
        "| budget | " + " | ".join(LEVERS) + " | joint (`pipeline run`) | rule | joint with `--min-resolution "
        f"{MIN_RESOLUTION}` | rule (every lever) |",
        "|---|" + "---|" * (len(LEVERS) + 4),
    ]
    for budget, row in result["budgets"].items():
        levers = single_levers(result, float(budget))
        cells = [_lever_cell(levers[name], sets) for name in LEVERS]
        for mode in ("joint", "sized"):
            holds, why = rule_holds(result, float(budget), mode)
            cells += [_joint_cell(row.get(mode), sets),
                      "not run" if mode not in row else "holds" if holds else "**fails**: " + why]
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    lines += ["", "## Each precision and input size of the original (no block dropped)", "",
              "| lever | measured ratio | agreement |", "|---|---|---|"]
    for name, row in result.get("precisions", {}).items():
        lines.append(f"| {name} | {row['measured_ratio']:.3f} | {_agreements(row['agreement'], sets)} |")
    for name, row in result.get("resolution", {}).items():
        lines.append(f"| {name} px, FP32 onnxruntime | {row['measured_ratio']:.3f} | "
                     f"{_agreements(row['agreement'], sets)} |")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    singles = {"precision of the original": result.get("precisions", {}),
               "resolution of the original": result.get("resolution", {})}
    for (label, rows), marker in zip(singles.items(), ("^", "v")):
        ax.scatter([r["measured_ratio"] for r in rows.values()], [100 * _mean(r["agreement"]) for r in rows.values()],
                   marker=marker, label=label)
    for mode, marker in (("depth", "o"), ("joint", "s"), ("sized", "D")):
        points = [(e["measured_ratio"], _mean(e["agreement"])) for row in result["budgets"].values()
                  if (e := row.get(mode)) and "agreement" in e and e["measured_ratio"] is not None]
        ax.scatter([p[0] for p in points], [100 * p[1] for p in points], marker=marker,
                   label={"depth": "depth only (runs)", "joint": "joint plan (runs)",
                          "sized": f"joint plan, --min-resolution {MIN_RESOLUTION} (runs)"}[mode])
    ax.set_xlabel("latency ratio against the FP32 original in onnxruntime (measured)")
    ax.set_ylabel("mean top-1 agreement on held-out sets (%)")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "practise-execution-plans",
                        help="run folders and image copies (large; not results)")
    parser.add_argument("--replot", action="store_true", help="redraw the .md and .png from the saved .json")
    parser.add_argument("--rerun", action="store_true",
                        help="run --budgets again (their run folders under --work are replaced) and merge them into the "
                             "saved results, keeping the saved single-lever figures")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="which runs to make (with --rerun: the others' saved cells are kept)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "execution_plans.json"
    if args.replot:
        result = json.loads(saved.read_text())
    elif args.rerun:
        result = json.loads(saved.read_text())
        for budget in args.budgets:
            for mode in args.modes:
                shutil.rmtree(args.work / "runs" / f"{mode}-{budget}", ignore_errors=True)
        fresh = run_benchmark(args.budgets, args.work, args.threads, resolution=result["resolution"],
                              modes=tuple(args.modes))
        for budget, row in fresh["budgets"].items():
            result["budgets"].setdefault(budget, {}).update(row)
        result.setdefault("reruns", []).append({"budgets": args.budgets, "modes": args.modes,
                                                "machine": fresh["machine"]})
        saved.write_text(json.dumps(result, indent=2))
    else:
        result = run_benchmark(args.budgets, args.work, args.threads, modes=tuple(args.modes))
        saved.write_text(json.dumps(result, indent=2))
    (args.out / "execution_plans.md").write_text(render(result))
    plot(result, args.out / "execution_plans.png")
    print(render(result))


if __name__ == "__main__":
    main()
