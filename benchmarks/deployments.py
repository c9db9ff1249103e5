"""A benchmark's `pipeline run`s and what they deployed, shared by the precision benchmarks (Lite0 and
Fashion-MNIST, and execution_plans through them): runs seeded with the stage files that do not depend on the
budget, the deployed artefact's logits read back from a run folder, and a deployment as one table cell.

Its own module so the two precision benchmarks share it without importing each other.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

SEEDED = ("latency_table.json", "precisions.json", "recoverability.json")


def run_seeded(config, mode: str, work: Path, log) -> Path:
    """`pipeline run` with `config`, its folder first given the stage files an earlier run of `work` made
    that do not depend on the budget (the FP32 table and scores from either mode; the survey from its own)."""
    from pipeline.run.context import prepare
    from pipeline.run.runner import run

    seed_folder = work / f"{mode}-seed"
    folder = prepare(config).folder
    for name in SEEDED:  # the FP32 table and the scores are the same in both modes; the survey only in auto
        sources = [seed_folder / name] + ([] if name == "precisions.json" else [work / f"{m}-seed" / name
                                                                                 for m in ("joint", "depth")])
        source = next((s for s in sources if s.exists()), None)
        if source is not None and not folder.has(name):
            shutil.copy(source, folder.file(name))
    started = time.monotonic()
    folder = run(config, log=log)
    if not seed_folder.exists():
        shutil.copytree(folder.path, seed_folder, ignore=lambda d, names: [n for n in names if n not in SEEDED])
    log(f"done in {time.monotonic() - started:.0f} s")
    return folder.path


def deployed_logits_of(run_dir: Path, images: dict[str, torch.Tensor],
                       images_at: Callable[[int], dict[str, torch.Tensor]] | None = None) -> tuple[dict, dict]:
    """The run's deployed artefact on each held-out set, and what was deployed (precision, blocks, ratio). A network
    deployed at a smaller input size (--min-resolution) is fed the sets prepared at that size by `images_at`."""
    from pipeline.latency.precision import file_logits

    export = json.loads((run_dir / "export.json").read_text())
    deployed = next(fmt for fmt, record in export.items() if record.get("deployed"))
    path = run_dir / export[deployed]["path"]
    dropped = json.loads((run_dir / "dropped_blocks.json").read_text())
    latency = export[deployed]["latency"]
    info = {"artefact": path.name, "precision": dropped.get("precision", "fp32"), "dropped": dropped["dropped"],
            "measured_ratio": latency.get("ratio"), "meets_budget": latency.get("meets_budget"),
            "deployed": json.loads((run_dir / "evaluation.json").read_text())["deployed"]}
    size = dropped.get("input_resolution")
    if size:
        if images_at is None:
            raise ValueError(f"{run_dir} deployed a {size} px network; pass images_at to evaluate it")
        info["input_resolution"], images = size, images_at(size)
    return {name: file_logits(path, x) for name, x in images.items()}, info


def deployment_cell(entry: dict | None, figures) -> str:
    """A table cell for one run's deployment: what shipped, its measured ratio, and `figures(entry)`."""
    if entry is None:
        return "not run"
    if "refused" in entry:
        return f"refused: {entry['refused'][:300]}"
    ratio = "n/a" if entry["measured_ratio"] is None else f"{entry['measured_ratio']:.3f}"
    missed = " **(misses the budget)**" if entry.get("meets_budget") is False else ""
    return (f"{entry['precision']}, {len(entry['dropped'])} blocks ({entry['deployed']}): ratio {ratio}{missed}, "
            f"{figures(entry)}")
