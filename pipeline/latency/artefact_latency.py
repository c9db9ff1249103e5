"""The latency of each exported artefact on the target, measured against the budget.

What users deploy is the file, not the PyTorch network, so each artefact is timed by the profiler
backend that runs its format on the run's target, interleaved with the original network in the
same runtime and settings as the latency table (same method: shuffled rounds, paired ratios).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.latency.profiling import measure_end_to_end
from profilers import ProfileSettings, get_profiler


def measure_artefact(fmt: str, path: Path, original: nn.Module, target: str, settings: ProfileSettings,
                     target_ratio: float, progress: ProgressFactory = silent) -> dict:
    """Time the artefact at `path` beside `original`; the ratio is compared with `target_ratio`."""
    from exporters.formats import FORMATS

    spec = FORMATS[fmt]
    backend = spec.runtimes.get(target)
    if backend is None:
        return {"measured": False, "reason": f"no {target} runtime for {fmt} in this tool"}
    if backend != "tensorrt" and not (fmt == "onnx-int8" and settings.precision.startswith("int8")):
        # beside the FP32 original; a run planned in one INT8 scheme only is timed beside the original in it
        settings = replace(settings, precision="fp32", cuda_graphs=False)
    if spec.same_form is not None:  # e.g. a traced original beside a traced artefact, not eager beside traced
        try:
            original = spec.same_form(original, torch.randn(settings.input_shape(1)), target)
        except Exception as exc:  # the artefact exists and passed its check; only its timing is lost
            return {"measured": False, "reason": f"the original network could not be put in {fmt} form to time it "
                                                 f"beside the artefact ({type(exc).__name__}: {exc})"[:500]}
    try:
        with get_profiler(target, backend, settings) as profiler:
            e2e = measure_end_to_end(original, spec.load(path), profiler, progress)
    except UsageError as exc:  # e.g. TensorRT or the GPU is not present on this machine
        return {"measured": False, "reason": str(exc)}
    return {
        "measured": True, "backend": profiler.fingerprint().backend, "precision": profiler.settings.precision,
        "artefact_ms": e2e.compressed.median_ms, "original_ms": e2e.original.median_ms,
        "original_form": fmt if spec.same_form is not None else "as the backend runs it",
        "ratio": e2e.ratio_median, "target_ratio": target_ratio, "meets_budget": e2e.ratio_median <= target_ratio,
        "stop_reason": e2e.stop_reason,
    }


def measure_artefacts(records: dict[str, dict], folder: Path, original: nn.Module, target: str,
                      settings: ProfileSettings, target_ratio: float, progress: ProgressFactory = silent,
                      log: Log = quiet_log) -> dict[str, dict]:
    """Add a "latency" entry to each artefact record (measured, or why not)."""
    for fmt, record in records.items():
        log(f"measuring the {fmt} artefact's latency beside the original network")
        record["latency"] = measure_artefact(fmt, folder / record["path"], original, target, settings, target_ratio,
                                             progress)
    return records
