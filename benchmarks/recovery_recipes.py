"""Benchmark: recovery recipes and the run's automatic choice, on two block families (Fashion-MNIST).

Two teachers: the ResNet of basic blocks of benchmarks/fashion_mnist.py and the inverted-residual network of
benchmarks/fashion_models.py. For each (teacher, budget, tiny-set size, seed): PRACTISE's blocks (recoverability
scores, greedy selection corrected by end-to-end measurement, as `pipeline run` does), then

- unrecovered, and `adaptors-200`: the fast preset's recovery before recipes (adaptors, 200 fixed steps);
- each recipe of pipeline/recovery/recipes.py on the schedule (range-test lr, patience on the selection split),
  through `try_recipes`, as the run calls it;
- auto: what the run deploys, chosen among unrecovered and the recipes by top-1 agreement with the teacher on
  300 unlabelled report images (train images outside the tiny set), `deployment._best_candidate`'s rule;
- ceiling: the same pruned network trained on all 60k labelled train images (cross-entropy, one epoch), once
  per (teacher, block set): how much of the gap is the tiny set and how much the recipe.

Test accuracy on the 10k test images, which nothing trains on or chooses with. Writes
results/recovery_recipes.{md,json}; `--replot` rewrites the .md from the .json.

    python -m benchmarks.recovery_recipes [--families resnet,mbv2] [--budgets 0.78] [--sizes 100] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS, machine_info, mean_and_spread, replot, write_result
from benchmarks.fashion_mnist import (
    DEFAULT_DATA,
    MEAN,
    RESOLUTION,
    STD,
    accuracy,
    augment,
    load_fashion_mnist,
    normalise,
    obtain_teacher,
    padded,
    padded_preprocessing,
    tiny_set,
)
from benchmarks.fashion_models import obtain_mobilenet_teacher

NAME = "recovery_recipes"
REPORT_IMAGES = 300


def _teacher(family: str, data: dict, log):
    if family == "resnet":
        return obtain_teacher(data, (8, 16, 32), 9, 1, None, log)  # 3 epochs did not fit this session (see notes)
    if family == "mbv2":
        return obtain_mobilenet_teacher(data, 2, log)
    raise SystemExit(f"unknown family {family}; choose resnet or mbv2")


def _table(family: str, teacher, meta: dict, structure, profile, log):
    from pipeline.core import paths
    from pipeline.latency.profiling import obtain_table
    from pipeline.models import LoadedModel
    from profilers import TableStore, get_profiler

    loaded = LoadedModel(f"benchmarks.recovery_recipes:{meta['key']}", teacher, RESOLUTION, (MEAN,) * 3, (STD,) * 3,
                         f"file:{meta['path']}")
    with get_profiler("cpu", None, profile) as profiler:
        return obtain_table(loaded, structure, profiler, TableStore(paths.table_store_dir()), log=log).table


@torch.no_grad()
def _logits(model, x_uint8: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(normalise(x_uint8[i:i + batch])) for i in range(0, len(x_uint8), batch)])


def _agreement(model, x_report, teacher_logits) -> tuple[float, float]:
    from pipeline.network.evaluation import prediction_kl

    logits = _logits(model, x_report)
    return float((logits.argmax(1) == teacher_logits.argmax(1)).float().mean()), prediction_kl(logits, teacher_logits)


def _schedule(args):
    """The product's recovery schedule with the benchmark's step cap (and patience, when given)."""
    from pipeline.recovery.schedule import ScheduleSettings

    schedule = replace(ScheduleSettings(), max_steps=args.max_steps)
    return schedule if args.patience is None else replace(schedule, patience=args.patience)


def ceiling(teacher, dropped: list[str], x_train, y_train, epochs: int, seed: int, log) -> torch.nn.Module:
    """The pruned network trained on every labelled train image (cross-entropy, SGD, cosine lr from 0.01)."""
    from pipeline.network.surgery import drop_blocks

    student = drop_blocks(teacher, dropped)
    student.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(x_train) / 128)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    student.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), generator=gen)
        for s in range(0, len(x_train), 128):
            idx = order[s:s + 128]
            loss = F.cross_entropy(student(normalise(augment(x_train[idx], gen))), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"ceiling epoch {epoch + 1}/{epochs}: last loss {float(loss):.3f}")
    return student.eval()


def run_family(family: str, args, data: dict, result: dict, save) -> None:
    from pipeline.latency.budget import Budget
    from pipeline.network.blocks import analyse
    from pipeline.run.presets import get_preset

    log = (lambda m: print(f"[{family}] {m}", flush=True))
    teacher, meta = _teacher(family, data, log)
    teacher.requires_grad_(False)
    x_test, y_test = padded(data["test_images"]), torch.from_numpy(data["test_labels"].astype(np.int64))
    fam = result["families"].setdefault(family, {"cells": [], "ceilings": {}})
    fam["teacher"] = {k: v for k, v in meta.items() if k not in ("losses", "data_fingerprint")}
    fam["teacher_accuracy"] = accuracy(teacher, x_test, y_test)
    log(f"teacher {100 * fam['teacher_accuracy']:.2f}%")
    structure = analyse(teacher, RESOLUTION)
    fam["candidates"] = structure.candidate_names()
    fam["schedule"] = _schedule(args).to_dict()
    preset = get_preset("fast")
    profile = replace(preset.profile, batch=1, resolution=RESOLUTION, threads=args.threads, time_cap_s=args.profile_cap)
    table = _table(family, teacher, meta, structure, profile, log)
    fam["full_ms"] = table.full.median_ms
    measured: dict = {}
    for seed in args.seeds:
        for size in args.sizes:
            for ratio in args.budgets:
                if any(c["seed"] == seed and c["size"] == size and c["budget"] == ratio for c in fam["cells"]):
                    continue
                cell = _cell(family, teacher, structure, table, profile, data, x_test, y_test, Budget.parse(str(ratio)),
                             size, seed, args, measured, log)
                fam["cells"].append(cell)
                save()
    # the ceiling after every cell (a run stopped early keeps the cells): once for the block set chosen most often
    keys = [",".join(sorted(c["dropped"])) for c in fam["cells"]]
    key = max(set(keys), key=keys.count) if keys else None
    if args.ceiling_epochs and key is not None and key not in fam["ceilings"]:
        start = time.monotonic()
        x_train, y_train = padded(data["train_images"]), torch.from_numpy(data["train_labels"].astype(np.int64))
        net = ceiling(teacher, key.split(","), x_train, y_train, args.ceiling_epochs, 0, log)
        fam["ceilings"][key] = {"test_accuracy": accuracy(net, x_test, y_test), "epochs": args.ceiling_epochs,
                                "seconds": round(time.monotonic() - start, 1)}
        log(f"ceiling {100 * fam['ceilings'][key]['test_accuracy']:.2f}%")
        save()


def _cell(family, teacher, structure, table, profile, data, x_test, y_test, budget, size, seed, args, measured,
          log) -> dict:
    from pipeline.data.tiny_set import augmented_views, eval_tensors, split_holdout
    from pipeline.latency.measured_selection import select_by_measurement
    from pipeline.latency.profiling import measure_end_to_end
    from pipeline.latency.selection import score_blocks, select_blocks
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.recipes import get_recipes
    from pipeline.recovery.recover import recover
    from pipeline.recovery.recoverability import score_recoverability
    from pipeline.recovery.trials import best_by_selection, try_recipes
    from pipeline.run.deployment import _best_candidate
    from pipeline.run.presets import get_preset
    from profilers import get_profiler

    preset, prep = get_preset("fast"), padded_preprocessing()
    x_train = padded(data["train_images"])
    order = np.random.default_rng(seed).permutation(len(x_train))
    tiny = tiny_set(x_train, data["train_labels"], order[:size])
    train, held = split_holdout(tiny, preset.holdout_fraction, seed)
    selection_images = eval_tensors(held, prep)
    x_report = x_train[torch.from_numpy(order[1000:1000 + REPORT_IMAGES])]
    teacher_report = _logits(teacher, x_report)
    log(f"== budget {budget.ratio}, {size} images, seed {seed}")
    t0 = time.monotonic()
    pool = augmented_views(train, prep, preset.scoring_pool_views, preset.scoring.min_crop_scale, seed)
    recov = score_recoverability(teacher, structure, pool, eval_tensors(train, prep), preset.scoring, {})
    scores = score_blocks({b: recov[b]["recoverability"] for b in structure.candidate_names()}, table)
    scoring_s = time.monotonic() - t0

    def measure(dropped):
        key = tuple(sorted(dropped))
        if key not in measured:
            with get_profiler("cpu", None, profile) as profiler:
                measured[key] = measure_end_to_end(teacher, drop_blocks(teacher, dropped), profiler)
        return measured[key]

    attempts, chosen = select_by_measurement(lambda extra: select_blocks(scores, table, budget, "greedy", extra),
                                             measure, budget, table.full.median_ms, 3)
    dropped = attempts[chosen]["dropped"]
    cell = {"budget": budget.ratio, "size": size, "seed": seed, "dropped": dropped, "scoring_s": round(scoring_s, 1),
            "measured_ratio": attempts[chosen]["measured"]["ratio_median"] if attempts[chosen].get("measured") else None,
            "meets_budget": attempts[chosen]["meets_budget"], "rows": {}}
    log(f"dropped {dropped}")

    def row(name, state, seconds, extra=None):
        net = drop_blocks(teacher, dropped)
        if state is not None:
            net.load_state_dict(state)
        agree, kl = _agreement(net, x_report, teacher_report)
        cell["rows"][name] = {"test_accuracy": accuracy(net, x_test, y_test), "report_agreement": agree,
                              "report_kl": kl, "seconds": round(seconds, 1), **(extra or {})}
        log(f"  {name}: {100 * cell['rows'][name]['test_accuracy']:.2f}% test, {100 * agree:.1f}% report agreement, "
            f"{seconds:.0f} s")

    row("unrecovered", None, 0.0)
    start = time.monotonic()
    student = drop_blocks(teacher, dropped)
    old = recover(teacher, student, dropped, structure, train, selection_images, prep, preset.recovery, seed)
    row("adaptors-200", old.state_dict, time.monotonic() - start, {"kept": old.kept})
    schedule = _schedule(args)
    trials = try_recipes(teacher, lambda: drop_blocks(teacher, dropped).requires_grad_(True), dropped, structure,
                         train, selection_images,
                         prep, preset.recovery, get_recipes(args.recipes), args.recovery_time, None, schedule, seed,
                         log=log)
    for t in trials:
        extra = {k: t.summary.get(k) for k in ("status", "reason", "steps", "lr", "stopped", "kept",
                                                "selection_kl_before", "selection_kl_after")}
        if t.finished:
            row(t.name, t.state_dict, t.summary["seconds"], extra)
        else:
            cell["rows"][t.name] = extra | {"seconds": t.summary["seconds"]}
    best = best_by_selection(trials)
    names = ["unrecovered"] + ([best.name] + [t.name for t in trials if t is not best and t.finished
                                              and t.summary["kept"] == "recovered"] if best else [])
    report = {n: {"top1_agreement": cell["rows"][n]["report_agreement"]} for n in names}
    report["kl"] = {n: cell["rows"][n]["report_kl"] for n in names}
    auto = _best_candidate(report)
    cell["auto"] = auto
    cell["selection_best"] = best.name if best else None
    cell["rows"]["auto"] = dict(cell["rows"][auto]) | {"chosen": auto,
                                                       "seconds": sum(t.summary["seconds"] for t in trials)}
    log(f"  auto chose {auto}: {100 * cell['rows']['auto']['test_accuracy']:.2f}%")
    return cell


# ------------------------------------------------------------------------------------------------ report

def _stats(values):
    return mean_and_spread(values) if values else None


def render(result: dict) -> str:
    lines = [f"# {NAME}: recovery recipes and the automatic choice, two block families (Fashion-MNIST)", "",
             f"Machine: {_machine(result['machine'])}. Command(s): `{result['command']}`. "
             f"Wall time {result.get('wall_s', 0):.0f} s. {result.get('note', '')}", "",
             "Test accuracy (%) on the 10,000 Fashion-MNIST test images (mean ± sd over seeds, n = seeds); gap = "
             "teacher minus row, in points. `auto` is what `pipeline run` deploys: among unrecovered and the recipes "
             f"that beat it on the selection split, the one that agrees best with the teacher on {REPORT_IMAGES} "
             "unlabelled report images (train images outside the tiny set). `adaptors-200` is the fast preset's "
             "recovery before recipes (200 fixed steps, lr 0.005). Recipes stop on patience (P checks of 20 "
             "steps without a 1% better selection-split KL, then lr/10 once, then P more; P under each family) or their "
             "step cap; lr from a "
             "24-step range test. `ceiling`: the same pruned network trained on all 60k labelled train images.", ""]
    for family, fam in result["families"].items():
        teacher = 100 * fam["teacher_accuracy"]
        schedule = fam.get("schedule", {"patience": 5, "max_steps": "as in its command"})  # results before the field: patience 5
        lines += [f"## {family}: teacher {teacher:.2f}%, {len(fam['candidates'])} candidate blocks", "",
                  f"Schedule: patience {schedule['patience']} checks, step cap {schedule['max_steps']}.", ""]
        groups: dict = {}
        for cell in fam["cells"]:
            groups.setdefault((cell["budget"], cell["size"]), []).append(cell)
        for (budget, size), cells in sorted(groups.items()):
            lines += [f"### budget {budget}, {size} tiny-set images ({len(cells)} seeds; blocks dropped: "
                      + "; ".join(sorted({', '.join(c['dropped']) for c in cells})) + ")", "",
                      "| recovery | test accuracy | gap to teacher | report agreement | steps | seconds | per seed |",
                      "|---|---|---|---|---|---|---|"]
            names = list(dict.fromkeys(n for c in cells for n in c["rows"]))
            for name in names:
                rows = [c["rows"].get(name, {}) for c in cells]
                accs = [100 * r["test_accuracy"] for r in rows if "test_accuracy" in r]
                st = _stats(accs)
                failed = [f"{r.get('status')}: {r.get('reason')}" for r in rows if r.get("status") not in (None, "finished")]
                if st is None:
                    lines.append(f"| {name} | dropped | | | | | {'; '.join(failed)} |")
                    continue
                agree = _stats([100 * r["report_agreement"] for r in rows if "report_agreement" in r])
                steps = [r["steps"] for r in rows if r.get("steps") is not None]
                secs = [r["seconds"] for r in rows if "seconds" in r]
                per_seed = ", ".join(f"{100 * r['test_accuracy']:.2f}" + (f" ({r['chosen']})" if "chosen" in r else "")
                                     for r in rows if "test_accuracy" in r)
                mean_steps = f"{statistics.mean(steps):.0f}" if steps else ""
                lines.append(f"| {name} | {st[0]:.2f} ± {st[1]:.2f} (n={st[2]}) | {teacher - st[0]:.2f} | "
                             f"{agree[0]:.1f} | {mean_steps} | "
                             f"{statistics.mean(secs):.0f} | {per_seed}{'; ' + '; '.join(failed) if failed else ''} |")
            for key, ceil in fam.get("ceilings", {}).items():
                if any(",".join(sorted(c["dropped"])) == key for c in cells):
                    lines.append(f"| ceiling (60k labelled, {ceil['epochs']} epoch) | {100 * ceil['test_accuracy']:.2f} "
                                 f"(one run) | {teacher - 100 * ceil['test_accuracy']:.2f} | | | {ceil['seconds']:.0f} | "
                                 f"blocks {key} |")
            lines += ["", _goal(cells, teacher), ""]
    lines += [result.get("not_run", "")]
    return "\n".join(lines) + "\n"


def _machine(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores (load: see the note); torch {m['torch']}, "
            f"onnxruntime {m['onnxruntime']}, {m.get('torch_threads', 1)} torch thread(s)")


def merge(out: Path, names: list[str]) -> dict:
    """One result from several (families run as separate processes): families side by side, commands joined."""
    parts = [json.loads((out / f"{n}.json").read_text()) for n in names]
    result = {"families": {}, "machine": parts[0]["machine"], "command": "`; `".join(p["command"] for p in parts),
              "wall_s": max(p.get("wall_s", 0) for p in parts), "note": " ".join(p.get("note", "") for p in parts)}
    for p in parts:
        result["families"].update(p["families"])
    write_result(out, NAME, result, render, 1)
    return result


def _goal(cells: list[dict], teacher: float) -> str:
    auto = statistics.mean(100 * c["rows"]["auto"]["test_accuracy"] for c in cells)
    recipes = {n for c in cells for n in c["rows"] if n not in ("auto", "unrecovered")}
    means = {n: statistics.mean(100 * c["rows"][n]["test_accuracy"] for c in cells)
             for n in recipes if all("test_accuracy" in c["rows"].get(n, {}) for c in cells)}
    best = max(means, key=means.get)
    return (f"Goal check: auto is {teacher - auto:.2f} points below the teacher (goal: within 2: "
            f"{'met' if teacher - auto <= 2 else 'NOT met'}); the best single recipe on average, {best}, "
            f"scored {means[best]:.2f}%, auto {auto - means[best]:+.2f} points against it.")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="resnet,mbv2")
    parser.add_argument("--budgets", default="0.78")
    parser.add_argument("--sizes", nargs="+", type=int, default=[100])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recipes", default=None, help="comma-separated (default: every recipe)")
    parser.add_argument("--recovery-time", type=float, default=3600.0,
                        help="time the recipes share per cell (default large: patience decides)")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--patience", type=int, default=None, help="the schedule's patience (default: the product's)")
    parser.add_argument("--ceiling-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile-cap", type=float, default=30.0)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default=NAME, help="result file name (families run in parallel: one each)")
    parser.add_argument("--replot", action="store_true")
    parser.add_argument("--note", default="", help="a sentence for the .md (e.g. what else ran on the machine)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="NAME",
                        help="only merge the named results in --out into recovery_recipes.{md,json}")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.out, args.merge)
    if replot(argparse.Namespace(replot=args.replot, out=args.out), args.name, render):
        return {}
    from pipeline.recovery.recipes import DEFAULT_RECIPES

    args.recipes = args.recipes.split(",") if args.recipes else list(DEFAULT_RECIPES)
    args.budgets = [float(b) for b in args.budgets.split(",")]
    torch.set_num_threads(args.threads)
    path = args.out / f"{args.name}.json"
    result = json.loads(path.read_text()) if path.exists() else {"families": {}}
    result.update(machine=machine_info() | {"torch_threads": args.threads}, note=args.note, command="python -m benchmarks.recovery_recipes " + shlex.join(
        argv if argv is not None else sys.argv[1:]))  # quoted: a --note with spaces reruns as one argument
    start = time.monotonic()
    earlier = result.get("wall_s", 0.0)
    data = load_fashion_mnist(args.data_dir)

    def save():
        result["wall_s"] = round(earlier + time.monotonic() - start, 1)
        write_result(args.out, args.name, result, render, 1)

    for family in args.families.split(","):
        run_family(family, args, data, result, save)
    save()
    return result


if __name__ == "__main__":
    main()
