"""Benchmark: the README's main job (`pipeline run` on the embedded default), timed from scratch.

Runs with a fresh tool home (so the latency table is measured, not reused) and writes
benchmarks/results/embedded_default.{json,md}. Usage:

    python -m benchmarks.embedded_default [--budget 0.78] [--smoke]

--smoke runs a reduced version that only checks the benchmark's own code still works (2 scoring and 4
recovery steps at 128 px, FP32 only, 1 s per latency measurement): the default's precision survey and
plans are tested on a tiny network (tests/run/test_plan_stages.py); an INT8 survey of Lite0 costs minutes
that a smoke test should not spend.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine_info



def run_benchmark(budget: str, smoke: bool, results_dir: Path) -> dict:
    from pipeline.run.config import RunConfig
    from pipeline.run.runner import run

    with tempfile.TemporaryDirectory(prefix="practise-bench-") as tmp:
        os.environ["PRACTISE_HOME"] = str(Path(tmp) / "home")
        overrides = dict(scoring_steps=2, recovery_steps=4, resolution=128, profile_time_cap=1,
                         precision="fp32") if smoke else {}
        config = RunConfig(budget=budget, out=str(Path(tmp) / "run"), **overrides)
        start = time.monotonic()
        folder = run(config, log=lambda m: print(m, flush=True))
        wall = time.monotonic() - start
        report = json.loads((folder.path / "report.json").read_text())
    lat, ev = report["latency"], report["evaluation"]
    result = {
        "benchmark": "embedded_default" + ("_smoke" if smoke else ""),
        "machine": machine_info(),
        "budget": budget,
        "dropped": report["selection"]["dropped"],
        "latency": lat,
        "agreement_report_images": {k: ev["report"][k] for k in ev.get("candidates", ("unrecovered", "recovered"))},
        "agreement_train_images": {k: ev["train"][k]["top1_agreement"] for k in ("unrecovered", "recovered")},
        "report_images": ev["report"]["images"],
        "verdict": ev["verdict"],
        "recovery_kept": report["recovery"]["kept"],
        "deployed": ev.get("deployed", report["recovery"]["kept"]),
        "timings_s": report["timings_s"],
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    name = result["benchmark"]
    (results_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (results_dir / f"{name}.md").write_text(render(result))
    return result


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render(r: dict) -> str:
    m, lat = r["machine"], r["latency"]
    device = lat["device"]
    un, rec = r["agreement_report_images"]["unrecovered"], r["agreement_report_images"]["recovered"]
    lines = [
        f"# {r['benchmark']}: `pipeline run` on the embedded default",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['machine']}); torch {m['torch']}, onnxruntime {m['onnxruntime']}. "
        f"EfficientNet-Lite0 (packaged ImageNet weights), budget {r['budget']}, preset fast, {device['backend']} "
        f"{device['precision'].upper()} timing, batch {device['batch']}, {device['resolution']} px. Measured from scratch "
        "(latency table not reused).",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| original latency (measured end to end, median) | {lat['measured_original_ms']:.3f} ms |",
        f"| compressed latency (measured end to end, median) | {lat['measured_compressed_ms']:.3f} ms |",
        f"| measured ratio (median of paired per-round ratios) | {lat['measured_ratio']:.3f} |",
        f"| predicted ratio from the latency table | {lat['predicted_ratio']:.3f} |",
        f"| target ratio | {lat['target_ratio']:.3f} ({'met' if lat['meets_budget'] else 'missed'}) |",
        f"| dropped blocks | {', '.join(r['dropped'])} |",
        f"| top-1 agreement with the original, {r['report_images']} held-out ImageNet photos | "
        f"{_pct(un['top1_agreement'])} unrecovered, {_pct(rec['top1_agreement'])} recovered |",
        f"| top-1 accuracy on them (original {_pct(un['teacher_top1'])}) | {_pct(un['student_top1'])} unrecovered, "
        f"{_pct(rec['student_top1'])} recovered |",
        f"| top-1 agreement on the training images | {_pct(r['agreement_train_images']['unrecovered'])} unrecovered, "
        f"{_pct(r['agreement_train_images']['recovered'])} recovered |",
        f"| state recovery kept (selection split) | {r['recovery_kept']} |",
        *[f"| top-1 agreement of the {k} network on the held-out photos | {_pct(v['top1_agreement'])} |"
          for k, v in r["agreement_report_images"].items() if k not in ("unrecovered", "recovered")],
        f"| network deployed (best on the report images) | {r.get('deployed', r['recovery_kept'])} |",
        f"| total wall time | {r['wall_s']:.0f} s |",
        f"| peak resident memory | {r['peak_rss_mb']:.0f} MB |",
        "",
        "| stage | wall time (s) |",
        "|---|---|",
    ]
    lines += [f"| {k.removesuffix('_s')} | {v:.1f} |" for k, v in r["timings_s"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="0.78")
    parser.add_argument("--smoke", action="store_true", help="reduced run that only checks the benchmark works")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run_benchmark(args.budget, args.smoke, args.results)
    print(render(result))


if __name__ == "__main__":
    main()
