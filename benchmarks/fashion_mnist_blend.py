"""Benchmark: blends of the recovered and unrecovered weights on Fashion-MNIST (tiny sets in domain).

The counterpart of lite0_blend: for the cells of results/fashion_mnist.json (the blocks PRACTISE chose per
budget, tiny-set size and seed), the default adaptor recovery, then test accuracy on the 10k test images
for blend weights 0 (unrecovered), 0.25, 0.5 (`halfway`), 0.75 and 1 (recovered).

    python -m benchmarks.fashion_mnist_blend [--seeds 0] [--sizes 50 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import machine_info

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def recovery_cells(seeds: list[int], sizes: list[int], threads: int, data_dir: Path | None):
    """Per cell of results/fashion_mnist.json (budget, tiny-set size, seed): everything a recovery needs.

    Yields (key, cell) with the teacher, structure, preprocessing, preset, the tiny set's train and selection
    splits as fashion_mnist drew them, the dropped blocks, and a `test_accuracy(network)` in percent.
    """
    from benchmarks import fashion_mnist as fm
    from pipeline.data.tiny_set import eval_tensors, split_holdout
    from pipeline.network.blocks import analyse
    from pipeline.run.presets import get_preset

    torch.set_num_threads(threads)
    saved = json.loads((RESULTS / "fashion_mnist.json").read_text())
    dropped_of = {(s["budget"], s["size"], s["seed"]): s["dropped"] for s in saved["selections"]
                  if s["selector"] == "practise-greedy"}
    data = fm.load_fashion_mnist(data_dir or fm.DEFAULT_DATA)
    x_train = fm.padded(data["train_images"])
    x_test, y_test = fm.padded(data["test_images"]), torch.from_numpy(data["test_labels"].astype(np.int64))
    teacher, _ = fm.obtain_teacher(data, (8, 16, 32), 9, 3, None)
    teacher.requires_grad_(False)
    structure, prep, preset = analyse(teacher, fm.RESOLUTION), fm._prep_class(), get_preset("fast")
    for seed in seeds:
        for size in sizes:
            order = np.random.default_rng(seed).permutation(len(x_train))[:size]  # as fashion_mnist draws it
            train, held = split_holdout(fm.tiny_set(x_train, data["train_labels"], order), preset.holdout_fraction, seed)
            for budget in sorted({b for b, s, r in dropped_of if (s, r) == (size, seed)}):
                yield f"{budget}/{size}/{seed}", {
                    "teacher": teacher, "structure": structure, "prep": prep, "preset": preset, "train": train,
                    "selection": eval_tensors(held, prep), "dropped": dropped_of[(budget, size, seed)], "seed": seed,
                    "test_accuracy": lambda net: 100 * fm.accuracy(net.eval(), x_test, y_test)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[50, 500])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.recover import blended_state, recover

    cells = {}
    for key, c in recovery_cells(args.seeds, args.sizes, args.threads, args.data_dir):
        student = drop_blocks(c["teacher"], c["dropped"])
        student.requires_grad_(True)
        unrecovered = {k: v.clone() for k, v in student.state_dict().items()}
        start = time.monotonic()
        result = recover(c["teacher"], student, c["dropped"], c["structure"], c["train"], c["selection"], c["prep"],
                         c["preset"].recovery, c["seed"])
        cell = {"dropped": c["dropped"], "recovery_s": round(time.monotonic() - start, 1), "accuracy": {}}
        for weight in WEIGHTS:
            student.load_state_dict(blended_state(unrecovered, result.state_dict, weight) if weight else unrecovered)
            cell["accuracy"][str(weight)] = c["test_accuracy"](student)
        cells[key] = cell
        print(key, cell["accuracy"], flush=True)
    result = {"benchmark": "fashion_mnist_blend", "machine": machine_info(), "threads": args.threads, "cells": cells}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fashion_mnist_blend.json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    lines = ["# Fashion-MNIST (tiny sets in domain): blends of the recovered and unrecovered weights", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {args.threads} thread(s). "
             "Test accuracy (%) on the 10k test images; teacher and blocks as in fashion_mnist.md; default adaptor "
             "recovery; blend weight w of the recovered change (0: unrecovered, 0.5: halfway, 1: recovered).", "",
             "| budget | tiny set | seed | w 0 | w 0.25 | w 0.5 | w 0.75 | w 1 |", "|---|---|---|---|---|---|---|---|"]
    for key, cell in cells.items():
        budget, size, seed = key.split("/")
        lines.append(f"| {budget} | {size} | {seed} | " + " | ".join(f"{cell['accuracy'][str(w)]:.2f}" for w in WEIGHTS)
                     + " |")
    (args.out / "fashion_mnist_blend.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'fashion_mnist_blend.md'}")


if __name__ == "__main__":
    main()
