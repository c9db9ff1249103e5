"""Benchmark: recovery on random against confident tiny-set views on Fashion-MNIST (tiny sets in domain).

The in-domain counterpart of lite0_views: for the cells of results/fashion_mnist.json (the blocks PRACTISE
chose per budget, tiny-set size and seed), the default adaptor recovery mimicking on fresh random views and
on the 256 of 1024 random views the original is surest about; test accuracy on the 10k test images.

    python -m benchmarks.fashion_mnist_views [--seeds 0 1 2] [--sizes 50 500] [--threads 2] [--replot]
"""

from __future__ import annotations

from dataclasses import replace

from benchmarks.common import grid_parser, machine_info, replot, write_result
from benchmarks.fashion_mnist_blend import recovered_cells

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
    args = grid_parser(__doc__, seeds=[0, 1, 2], threads=2, sizes=[50, 500]).parse_args(argv)
    if replot(args, "fashion_mnist_views", render):
        return
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.confident_views import ViewSettings

    recipes = {views: (lambda settings, views=views: replace(settings, views=ViewSettings(views))) for views in VIEWS}
    cells = {}
    for key, c, recovered in recovered_cells(args, recipes):
        cell = {"dropped": c["dropped"], "accuracy": {"unrecovered": c["test_accuracy"](drop_blocks(c["teacher"],
                                                                                                    c["dropped"]))},
                "recovery_s": {}}
        for views, (student, result, seconds) in recovered.items():
            cell["recovery_s"][views] = seconds
            student.load_state_dict(result.state_dict)
            cell["accuracy"][views] = c["test_accuracy"](student)
        cells[key] = cell
        print(key, cell["accuracy"], flush=True)
    result = {"benchmark": "fashion_mnist_views", "machine": machine_info(), "threads": args.threads, "cells": cells}
    write_result(args.out, "fashion_mnist_views", result, render, indent=1)


if __name__ == "__main__":
    main()
