"""Benchmark: recovery on random against confident tiny-set views, EfficientNet-Lite0, out-of-domain tiny sets.

For each tiny set and seed: the blocks lite0_out_of_domain chose (results/lite0_out_of_domain_seeds.json), the
default adaptor recovery mimicking on fresh random views, and the same recovery mimicking on the 256 of 1024
random views the original is surest about (pipeline/recovery/confident_views.py). Both are judged on the 201 held-out
images (20 ImageNet photos, 181 Tux Paint stamps), and the run's deployment rule is simulated for each (half of
the held-out images choose between the unrecovered and the recovered network as --val images would, the other
half reports; lite0_blend.simulate_rule).

    python -m benchmarks.lite0_views [--seeds 0 1 2] [--tiny-sets pip opencv tux wallpapers] [--threads 2]

Recovered states are kept under $PRACTISE_HOME/benchmarks/lite0-blend-states (the random-view ones are
lite0_blend's), so a rerun only evaluates.
"""

from __future__ import annotations

import torch

from benchmarks.common import grid_parser, machine_info, replot, write_result
from benchmarks.lite0_blend import (
    SPLITS,
    evaluate_blends,
    recovered_states,
    setup,
    simulate_rule,
)

RECIPES = {"random": "adaptors (default)", "confident": "adaptors, confident views"}
PARTS = ("all", "photos", "stamps")


def _levels(agrees: list[int], photos: list[int]) -> dict:
    """Top-1 agreement (%) on all held-out images, the photos and the stamps."""
    stamps = [i for i in range(len(agrees)) if i not in photos]
    return {part: 100 * sum(agrees[i] for i in idx) / len(idx)
            for part, idx in zip(PARTS, (range(len(agrees)), photos, stamps))}


def run_row(states: dict, loaded, heldout: torch.Tensor, teacher_logits: torch.Tensor, photos: list[int],
            seed: int) -> dict:
    """One tiny set and seed: agreement levels of the unrecovered network and of each recipe, and the rule."""
    row = {"dropped": states["random"]["dropped"]}
    for views, state in states.items():
        evaluated = evaluate_blends(state, loaded, heldout, teacher_logits, weights=(0.0, 1.0))
        row["unrecovered"] = _levels(evaluated["0.0"]["agrees"], photos)
        row[views] = {"levels": _levels(evaluated["1.0"]["agrees"], photos), "recovery_s": state.get("seconds"),
                      "rule": simulate_rule(evaluated, photos, ("0.0", "1.0"), SPLITS, seed)}
    return row


def render(result: dict) -> str:
    machine = result["machine"]
    lines = [
        "# EfficientNet-Lite0, out-of-domain tiny sets: recovery on random or on confident views",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, torch {machine.get('torch')}, "
        f"{result['threads']} threads. Budget {result['budget']}; the blocks lite0_out_of_domain chose for each tiny "
        "set and seed; the default adaptor recovery (200 steps, early stopping on the tiny set's selection split) "
        "mimicking on fresh random views, or on the 256 of 1024 random views the original is surest about "
        "(`--recovery-views confident`).",
        "",
        "Change in top-1 agreement with the original against the unrecovered network (points) on the held-out "
        "images: all 201 / 20 ImageNet photos / 181 Tux Paint stamps. 'rule' simulates the run's deployment "
        f"rule ({SPLITS} random halvings; one half chooses between unrecovered and recovered as --val images "
        "would, the other reports): mean change of the reported half.",
        "",
        "| tiny set | seed | unrecovered (%) | random views | rule | confident views | rule | recovery s (random / confident) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    changes: dict = {}
    for key, row in result["runs"].items():
        name, seed = key.split("/")
        base = row["unrecovered"]
        cells = []
        for views in RECIPES:
            delta = {p: row[views]["levels"][p] - base[p] for p in PARTS}
            for p in PARTS:
                changes.setdefault((views, p), []).append(delta[p])
            changes.setdefault((views, "rule"), []).append(row[views]["rule"])
            cells += [" / ".join(f"{delta[p]:+.1f}" for p in PARTS), f"{row[views]['rule']:+.2f}"]
        seconds = " / ".join(f"{row[v]['recovery_s']:.0f}" if row[v]["recovery_s"] else "?" for v in RECIPES)
        lines.append(f"| {name} | {seed} | " + " / ".join(f"{base[p]:.1f}" for p in PARTS) + " | "
                     + " | ".join(cells) + f" | {seconds} |")
    mean = {k: sum(v) / len(v) for k, v in changes.items()}
    lines.append("| mean | | | " + " | ".join(
        f"{' / '.join(f'{mean[(v, p)]:+.1f}' for p in PARTS)} | {mean[(v, 'rule')]:+.2f}" for v in RECIPES) + " | |")
    wins = sum(1 for row in result["runs"].values()
               if row["confident"]["levels"]["all"] > row["random"]["levels"]["all"])
    ties = sum(1 for row in result["runs"].values()
               if row["confident"]["levels"]["all"] == row["random"]["levels"]["all"])
    helped = {v: sum(1 for row in result["runs"].values() if row[v]["levels"]["all"] > row["unrecovered"]["all"])
              for v in RECIPES}
    lines += ["", f"On all 201 images, confident views beat random views in {wins} of {len(result['runs'])} runs "
              f"({ties} ties). Recovery raised agreement over the unrecovered network in {helped['random']} runs "
              f"with random views and {helped['confident']} with confident views.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = grid_parser(__doc__, seeds=[0, 1, 2], threads=0,
                       tiny_sets=["pip", "opencv", "tux", "wallpapers"]).parse_args(argv)
    if replot(args, "lite0_views", render):
        return
    bench = setup(args.tiny_sets, args.threads)
    loaded, photos = bench["loaded"], bench["photos"]
    per_recipe = {views: recovered_states(args.tiny_sets, args.seeds, bench["dropped_of"], loaded, bench["structure"],
                                          bench["sets"], bench["states"], lambda m: print(m, flush=True), recipe)
                  for views, recipe in RECIPES.items()}
    runs = {}
    for seed, name in sorted(per_recipe["random"], key=lambda k: (k[1], k[0])):
        states = {views: per_recipe[views][(seed, name)] for views in RECIPES}
        runs[f"{name}/{seed}"] = run_row(states, loaded, bench["heldout"], bench["teacher_logits"], photos, seed)
        print(f"{name} seed {seed}: " + ", ".join(
            f"{v} {runs[f'{name}/{seed}'][v]['levels']['all']:.1f}%" for v in RECIPES), flush=True)
    result = {"benchmark": "lite0_views", "budget": bench["budget"], "photos": photos, "runs": runs,
              "machine": machine_info(), "threads": torch.get_num_threads()}
    write_result(args.out, "lite0_views", result, render, indent=None)


if __name__ == "__main__":
    main()
