"""Benchmark: recovery on random against confident tiny-set views on Fashion-MNIST (tiny sets in domain).

The in-domain counterpart of lite0_views: for the cells of results/fashion_mnist.json (the blocks PRACTISE
chose per budget, tiny-set size and seed), the default adaptor recovery mimicking on fresh random views and
on the 256 of 1024 random views the original is surest about; test accuracy on the 10k test images.

    python -m benchmarks.fashion_mnist_views [--seeds 0 1 2] [--sizes 50 500] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.fashion_mnist_blend import RESULTS, recovery_cells
from benchmarks.machine import machine_info

VIEWS = ("random", "confident")


def render(result: dict) -> str:
    m = result["machine"]
    lines = ["# Fashion-MNIST (tiny sets in domain): recovery on random or on confident views", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {result['threads']} "
             "thread(s). Test accuracy (%) on the 10k test images; teacher and blocks as in fashion_mnist.md; the "
             "default adaptor recovery on fresh random views or on the 256 of 1024 random views the original is "
             "surest about (`--recovery-views confident`).", "",
             "| budget | tiny set | seed | unrecovered | random views | confident views | recovery s (random / confident) |",
             "|---|---|---|---|---|---|---|"]
    diffs = []
    for key, cell in result["cells"].items():
        budget, size, seed = key.split("/")
        acc, secs = cell["accuracy"], cell["recovery_s"]
        diffs.append(acc["confident"] - acc["random"])
        lines.append(f"| {budget} | {size} | {seed} | {acc['unrecovered']:.2f} | {acc['random']:.2f} | "
                     f"{acc['confident']:.2f} | {secs['random']:.0f} / {secs['confident']:.0f} |")
    ordered = sorted(diffs)
    median = (ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2]) / 2
    lines += ["", f"Confident minus random views: mean {sum(diffs) / len(diffs):+.2f} points, median {median:+.2f}, "
              f"higher in {sum(d > 0 for d in diffs)} of {len(diffs)} cells.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="+", type=int, default=[50, 500])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.confident_views import ViewSettings
    from pipeline.recovery.recover import recover

    cells = {}
    for key, c in recovery_cells(args.seeds, args.sizes, args.threads, args.data_dir):
        student = drop_blocks(c["teacher"], c["dropped"])
        cell = {"dropped": c["dropped"], "accuracy": {"unrecovered": c["test_accuracy"](student)}, "recovery_s": {}}
        for views in VIEWS:
            student = drop_blocks(c["teacher"], c["dropped"])
            student.requires_grad_(True)
            settings = replace(c["preset"].recovery, views=ViewSettings(views))
            start = time.monotonic()
            result = recover(c["teacher"], student, c["dropped"], c["structure"], c["train"], c["selection"],
                             c["prep"], settings, c["seed"])
            cell["recovery_s"][views] = round(time.monotonic() - start, 1)
            student.load_state_dict(result.state_dict)
            cell["accuracy"][views] = c["test_accuracy"](student)
        cells[key] = cell
        print(key, cell["accuracy"], flush=True)
    result = {"benchmark": "fashion_mnist_views", "machine": machine_info(), "threads": args.threads, "cells": cells}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fashion_mnist_views.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "fashion_mnist_views.md").write_text(render(result))
    print(f"wrote {args.out / 'fashion_mnist_views.md'}")


if __name__ == "__main__":
    main()
