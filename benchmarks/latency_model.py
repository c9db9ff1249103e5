"""The latency model that learns interactions, evaluated on recorded tables and their validation drops.

For each (table, validation) pair in benchmarks/results (measured by `pipeline profile --validate K`),
fit the interaction model (profilers/latency_model.py) and report, per measured multi-block drop, the
additive and the fitted model's error when that drop (and any repeat of it) was held out of the fit;
then how the held-out error moves with the pair terms' ridge weight. No measurement is made here:
the figures come from the recorded files, so the script runs anywhere in a second.

    python -m benchmarks.latency_model            # writes results/latency_model.{json,md}
    python -m benchmarks.latency_model --replot   # rewrites the .md from the .json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, write_result
from pipeline.core.atomic import write_text_atomic
from profilers import LatencyTable
from profilers.latency_model import ADDITIVE, INTERACTIONS, PAIR_RIDGE, Drop, held_out_errors

# (name, table file, validation file, where it was measured)
TABLES = [
    ("EfficientNet-Lite0, onnxruntime CPU FP32", "latency_table_efficientnet_lite0_cpu.json",
     "latency_table_validation.json",
     "a 2-core AMD EPYC machine of this project (shared), onnxruntime 1.32.0, 2 threads; latency_table_validation.md"),
    ("EfficientNet-Lite0, onnxruntime CPU FP32, loaded machine", "latency_table_efficientnet_lite0_cpu_loaded.json",
     "latency_table_efficientnet_lite0_cpu_loaded.validation.json",
     "this 2-core AMD EPYC machine on 2026-12-02 while other jobs used both cores (full network 62.8 ms against 5.2 ms "
     "in the table above; 5 rounds; two blocks measured with negative savings): `pipeline profile --validate 12`"),
    ("EfficientNet-Lite0, torch CUDA eager FP32", "latency_table_efficientnet_lite0_h100_torch.json",
     "latency_table_efficientnet_lite0_h100_torch.validation.json",
     "a lent NVIDIA H100 80GB HBM3 (torch 2.11.0+cu130), 2026-11-25; gpu_h100.md"),
    ("EfficientNet-Lite0, torch CUDA graphs FP32", "latency_table_efficientnet_lite0_h100_cuda_graphs.json",
     "latency_table_efficientnet_lite0_h100_cuda_graphs.validation.json",
     "the same lent H100, --cuda-graphs; gpu_h100.md"),
]
PAIR_RIDGES = [0.1, 1.0, 10.0, 1e9]  # 1e9: the pair terms switched off (only the shared per-block term)


def evaluate(results: Path) -> dict:
    rows = []
    for name, table_file, validation_file, machine in TABLES:
        table = LatencyTable.read(results / table_file)
        checks = json.loads((results / validation_file).read_text())["checks"]
        fitted = table.with_model_fitted(checks)
        drops = [Drop(tuple(c["dropped"]), c["measured_ratio"]) for c in checks]
        fractions = table.saving_fractions()
        sensitivity = {}
        for ridge in PAIR_RIDGES:
            _, errors = held_out_errors(drops, fractions, ridge)
            sensitivity[str(ridge)] = float(np.median(np.abs(errors)))
        rows.append({"name": name, "table": table_file, "validation": validation_file, "machine": machine,
                     "model": fitted.latency_model.to_dict(),
                     "drops": [{"dropped": list(d.dropped), "measured_ratio": d.measured_ratio,
                                "additive_ratio": table.additive_ratio(d.dropped)} for d in drops],
                     "pair_ridge_sensitivity": sensitivity})
    return {"pair_ridge": PAIR_RIDGE, "tables": rows}


def render(result: dict) -> str:
    lines = [
        "# The latency model that learns interactions, on recorded tables",
        "",
        "`python -m benchmarks.latency_model` (no measurement: it refits the recorded files in a second).",
        "Each table's single-block savings predict a multi-block drop by adding up (the additive model). The",
        "interaction model adds a saving shared by every dropped block beyond the first and a term per pair of",
        "neighbouring candidate blocks dropped together, fitted by ridge least squares on the drops that",
        "`pipeline profile --validate K` measured end to end (profilers/latency_model.py). Each error below is",
        "the model's on a drop held out of its fit (leave-one-drop-out; a drop measured twice is held out",
        "with its repeat), beside the additive model's on the same drop; relative error of the predicted",
        "latency ratio, (predicted - measured) / measured. A table carries the interaction model only when its",
        "held-out median error is lower.",
        "",
        "| table | measured on | distinct drops | additive: median / worst | interactions (held out): median / worst | table carries |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["tables"]:
        ev = row["model"]["evaluation"]
        add, fit = ev["held_out"][ADDITIVE], ev["held_out"][INTERACTIONS]
        lines.append(f"| {row['name']} (`{row['table']}`) | {row['machine']} | {ev['distinct_drops']} of {ev['drops']} | "
                     f"{100 * add['median_abs_relative_error']:.1f}% / {100 * add['worst_abs_relative_error']:.1f}% | "
                     f"{100 * fit['median_abs_relative_error']:.1f}% / {100 * fit['worst_abs_relative_error']:.1f}% | "
                     f"{row['model']['kind']} |")
    for row in result["tables"]:
        model, ev = row["model"], row["model"]["evaluation"]
        lines += ["", f"## {row['name']}", "",
                  f"Fitted on all drops: shared saving per extra block {100 * model['extra_fraction']:.2f}% of the full "
                  f"latency; largest pair term {_largest_pair(model)}. Kind carried: {model['kind']} ({ev['reason']}).", "",
                  "| dropped blocks | measured ratio | additive | error | interactions (held out) | error |", "|---|---|---|---|---|---|"]
        fit_errors = ev["held_out"][INTERACTIONS]["relative_errors"]
        for drop, add_error, fit_error in zip(row["drops"], ev["held_out"][ADDITIVE]["relative_errors"], fit_errors):
            blocks = ", ".join(b.split(".")[-1] for b in drop["dropped"])
            fitted_ratio = drop["measured_ratio"] * (1 + fit_error)
            lines.append(f"| {blocks} | {drop['measured_ratio']:.3f} | {drop['additive_ratio']:.3f} | {100 * add_error:+.1f}% | "
                         f"{fitted_ratio:.3f} | {100 * fit_error:+.1f}% |")
    lines += ["", "## How the held-out error moves with the pair terms' ridge weight", "",
              f"The shipped weight is {result['pair_ridge']:g}; 1e9 switches the pair terms off. The weight was chosen "
              "looking at these same three files, so the held-out figures above are slightly optimistic; with more "
              "validation drops (`--validate 20`) the pair terms can earn more.", "",
              "| table | " + " | ".join(f"ridge {float(r):g}" for r in result["tables"][0]["pair_ridge_sensitivity"]) + " |",
              "|---|" + "---|" * len(result["tables"][0]["pair_ridge_sensitivity"])]
    for row in result["tables"]:
        lines.append(f"| {row['name']} | " + " | ".join(f"{100 * v:.1f}%" for v in row["pair_ridge_sensitivity"].values()) + " |")
    lines += ["", "## Reading", ""] + [f"- {_reading(row)}" for row in result["tables"]] + [
        "- The recorded tables have 5 distinct validation drops each (seed 0 drew one drop twice), the loaded CPU "
        "table 10 of 12: few, so a GPU session should measure `pipeline profile --validate 20` and refit "
        "(`pipeline tables fit TABLE VALIDATION`).",
        "- The loaded-machine table shows what noise does: neither model predicts well when the single-block "
        "savings themselves are blurred; the fitted terms absorb part of it. Profile on an idle machine.", ""]
    return "\n".join(lines)


def _reading(row: dict) -> str:
    held_out = row["model"]["evaluation"]["held_out"]
    add, fit = (held_out[k]["median_abs_relative_error"] for k in (ADDITIVE, INTERACTIONS))
    verdict = ("the table carries the interaction model" if row["model"]["kind"] == INTERACTIONS
               else "the fit does not beat the sums on held-out drops, so the table stays additive")
    return (f"{row['name']}: summed single-block savings are off by {100 * add:.1f}% (median); the interaction "
            f"model, on drops held out of its fit, by {100 * fit:.1f}%: {verdict}.")


def _largest_pair(model: dict) -> str:
    if not model["pair_fractions"]:
        return "none (additive)"
    name, value = max(model["pair_fractions"].items(), key=lambda kv: abs(kv[1]))
    return f"{name} {100 * value:+.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true", help="only rewrite the .md from the saved .json")
    args = parser.parse_args()
    if args.replot:
        write_text_atomic(args.out / "latency_model.md", render(json.loads((args.out / "latency_model.json").read_text())))
        return
    write_result(args.out, "latency_model", evaluate(RESULTS), render, indent=1)


if __name__ == "__main__":
    main()
