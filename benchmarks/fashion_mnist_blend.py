"""Benchmark: blends of the recovered and unrecovered weights on Fashion-MNIST (tiny sets in domain).

The counterpart of lite0_blend: for the cells of results/fashion_mnist.json (the blocks PRACTISE chose per
budget, tiny-set size and seed), the default adaptor recovery, then test accuracy on the 10k test images
for blend weights 0 (unrecovered), 0.25, 0.5 (`halfway`), 0.75 and 1 (recovered).

    python -m benchmarks.fashion_mnist_blend [--seeds 0] [--sizes 50 500] [--threads 1] [--replot]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.common import RESULTS, grid_parser, machine_info, replot, write_result
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
    structure, prep, preset = analyse(teacher, fm.RESOLUTION), fm.padded_preprocessing(), get_preset("fast")
    for seed in seeds:
        for size in sizes:
            order = np.random.default_rng(seed).permutation(len(x_train))[:size]  # as fashion_mnist draws it
            train, held = split_holdout(fm.tiny_set(x_train, data["train_labels"], order), preset.holdout_fraction, seed)
            for budget in sorted({b for b, s, r in dropped_of if (s, r) == (size, seed)}):
                yield f"{budget}/{size}/{seed}", {
                    "teacher": teacher, "structure": structure, "prep": prep, "preset": preset, "train": train,
                    "selection": eval_tensors(held, prep), "dropped": dropped_of[(budget, size, seed)], "seed": seed,
                    "test_accuracy": lambda net: 100 * fm.accuracy(net.eval(), x_test, y_test)}


def recover_cell(cell: dict, settings) -> tuple:
    """The default-pipeline recovery of one cell's pruned network: (student, recovery result, seconds)."""
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.recover import recover

    student = drop_blocks(cell["teacher"], cell["dropped"])
    student.requires_grad_(True)
    start = time.monotonic()
    result = recover(cell["teacher"], student, cell["dropped"], cell["structure"], cell["train"], cell["selection"],
                     cell["prep"], settings, cell["seed"])
    return student, result, round(time.monotonic() - start, 1)


def recovered_cells(args, recipes: dict[str, Callable]):
    """The one recover-per-cell loop: per cell, each recipe (preset recovery -> settings) recovered in turn.

    Yields (key, cell, {recipe: (student, result, seconds)}).
    """
    for key, cell in recovery_cells(args.seeds, args.sizes, args.threads, args.data_dir):
        yield key, cell, {name: recover_cell(cell, make(cell["preset"].recovery)) for name, make in recipes.items()}


def render(result: dict) -> str:
    m = result["machine"]
    lines = ["# Fashion-MNIST (tiny sets in domain): blends of the recovered and unrecovered weights", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {result['threads']} thread(s). "
             "Test accuracy (%) on the 10k test images; teacher and blocks as in fashion_mnist.md; default adaptor "
             "recovery; blend weight w of the recovered change (0: unrecovered, 0.5: halfway, 1: recovered).", "",
             "| budget | tiny set | seed | w 0 | w 0.25 | w 0.5 | w 0.75 | w 1 |", "|---|---|---|---|---|---|---|---|"]
    for key, cell in result["cells"].items():
        budget, size, seed = key.split("/")
        lines.append(f"| {budget} | {size} | {seed} | " + " | ".join(f"{cell['accuracy'][str(w)]:.2f}" for w in WEIGHTS)
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = grid_parser(__doc__, seeds=[0], threads=1, sizes=[50, 500]).parse_args(argv)
    if replot(args, "fashion_mnist_blend", render):
        return
    from pipeline.recovery.recover import blended_state

    cells = {}
    for key, c, recovered in recovered_cells(args, {"default": lambda settings: settings}):
        student, result, seconds = recovered["default"]
        unrecovered = drop_blocks_state(c)
        cell = {"dropped": c["dropped"], "recovery_s": seconds, "accuracy": {}}
        for weight in WEIGHTS:
            student.load_state_dict(blended_state(unrecovered, result.state_dict, weight) if weight else unrecovered)
            cell["accuracy"][str(weight)] = c["test_accuracy"](student)
        cells[key] = cell
        print(key, cell["accuracy"], flush=True)
    result = {"benchmark": "fashion_mnist_blend", "machine": machine_info(), "threads": args.threads, "cells": cells}
    write_result(args.out, "fashion_mnist_blend", result, render, indent=1)


def drop_blocks_state(cell: dict) -> dict:
    """The state of the cell's pruned network before recovery."""
    from pipeline.network.surgery import drop_blocks

    return {k: v.clone() for k, v in drop_blocks(cell["teacher"], cell["dropped"]).state_dict().items()}


if __name__ == "__main__":
    main()
