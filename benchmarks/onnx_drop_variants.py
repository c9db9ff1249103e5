"""Benchmark: preparing the 10 variants of EfficientNet-Lite0's latency table in the onnxruntime CPU profiler.

Before: every variant exported with the dynamo exporter (what the profiler did; here by variants that do not
record their origin, so the same code takes the old path). After: the original exported once and each
single-block drop made by editing its ONNX graph (exporters/onnx_drop.py) and checked against PyTorch.
Both on a fresh profiler activation, 224 px, FP32, side by side in one process; the machine's load average
is recorded with the times. Usage: python -m benchmarks.onnx_drop_variants  (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time

import numpy as np
import torch

from benchmarks.common import RESULTS
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.network.surgery import drop_blocks
from profilers import ProfileSettings, get_profiler

RESULT = RESULTS / "onnx_drop_variants.json"


def _prepare_s(variants: dict, settings: ProfileSettings) -> tuple[list[float], list[str]]:
    """Seconds to turn each variant into the file the profiler times, in order, on a fresh activation."""
    messages: list[str] = []
    seconds = []
    with get_profiler("cpu", "onnxruntime", settings) as profiler:
        profiler.log = messages.append
        for variant in variants.values():
            start = time.perf_counter()
            profiler.prepared(variant)
            seconds.append(time.perf_counter() - start)
    return seconds, messages


def main() -> None:
    loaded = load_model("efficientnet_lite0")
    names = analyse(loaded.module, 224).candidate_names()
    settings = ProfileSettings(resolution=224)
    edited = {"full": loaded.module, **{b: drop_blocks(loaded.module, [b]) for b in names}}
    exported = {"full": loaded.module, **{b: drop_blocks(copy.deepcopy(loaded.module), [b], copy=False)
                                          for b in names}}  # in place on a copy: no origin, exported as before
    rows = []
    for label, variants in (("after: edited", edited), ("before: exported", exported), ("after: edited", edited)):
        load_before = os.getloadavg()[0]
        each, messages = _prepare_s(variants, settings)
        seconds = sum(each)
        rows.append({"method": label, "variants": len(variants), "prepare_s": round(seconds, 2),
                     "original_s": round(each[0], 2), "per_drop_median_s": round(float(np.median(each[1:])), 2),
                     "load_average_1min_before": round(load_before, 2), "log": messages})
        print(f"{label:18s} {len(variants)} variants: {seconds:6.1f} s (original {each[0]:.1f} s, each drop "
              f"{np.median(each[1:]):.2f} s; 1-min load average {load_before:.1f})")
    after = min(r["prepare_s"] for r in rows if r["method"].startswith("after"))
    before = next(r["prepare_s"] for r in rows if r["method"].startswith("before"))
    result = {"model": "efficientnet_lite0", "resolution": 224, "precision": "fp32", "cores": os.cpu_count(),
              "machine": platform.machine(), "torch": torch.__version__, "rows": rows,
              "ratio_before_over_after": round(before / after, 1)}
    print(f"before / after: {result['ratio_before_over_after']}x")
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
