"""The latency of each exported artefact on the target, measured against the budget.

What users deploy is the file, not the PyTorch network, so each artefact is timed by the profiler
backend that runs its format on the run's target, interleaved with the original network in the
same runtime and settings as the latency table (same method: shuffled rounds, paired ratios). Artefacts
that one backend runs (model.onnx and model.int8.onnx on onnxruntime) share one measurement, so the
original is timed once for all of them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.latency.precision import Precision
from pipeline.latency.profiling import measure_variants
from profilers import ProfileSettings, get_profiler

ORIGINAL = "original"


def timing_settings(fmt: str, target: str, settings: ProfileSettings) -> tuple[str | None, ProfileSettings]:
    """The profiler backend that runs `fmt` on `target` (None: none in this tool), and its settings."""
    from exporters.formats import FORMATS

    from exporters.openvino_ir import is_openvino

    backend = FORMATS[fmt].runtimes.get(target)
    if target == "cpu" and is_openvino(settings.precision) and backend in ("onnxruntime", "openvino", "auto"):
        # a run whose budget is relative to OpenVINO FP32 (--backend openvino, --reference-backend openvino): every
        # CPU file is timed beside the original in that precision, by the backend that runs both runtimes
        return "auto", replace(settings, cuda_graphs=False)
    own_reference = ((fmt == "onnx-int8" and Precision(settings.precision).runtime in ("onnxruntime", "tensorrt"))
                     or (fmt == "openvino" and is_openvino(settings.precision)))
    if backend is not None and backend != "tensorrt" and not own_reference:
        # beside the FP32 original on the reference runtime; a run planned in one INT8 scheme only (or in OpenVINO
        # only) is timed beside the original in its own reference precision
        settings = replace(settings, precision="fp32", cuda_graphs=False)
    return backend, settings


def measure_artefact(fmt: str, path: Path, original: nn.Module, target: str, settings: ProfileSettings,
                     target_ratio: float, progress: ProgressFactory = silent) -> dict:
    """Time the artefact at `path` beside `original`; the ratio is compared with `target_ratio`."""
    return measure_together({fmt: path}, original, target, settings, target_ratio, progress)[fmt]


def measure_together(paths: dict[str, Path], original: nn.Module, target: str, settings: ProfileSettings,
                     target_ratio: float, progress: ProgressFactory = silent) -> dict[str, dict]:
    """Time artefacts that one backend runs, with the same settings, beside `original` in one interleaved
    measurement (each ratio paired with the same rounds of the original); a format that must be timed beside
    the original in its own form (traced, compiled) gets a measurement of its own."""
    from exporters.formats import FORMATS

    backends = {fmt: timing_settings(fmt, target, settings) for fmt in paths}
    results = {fmt: {"measured": False, "reason": f"no {target} runtime for {fmt} in this tool"}
               for fmt, (backend, _) in backends.items() if backend is None}
    groups: dict[tuple, list[str]] = {}
    for fmt, (backend, fmt_settings) in backends.items():
        if backend is not None:
            own_form = FORMATS[fmt].same_form is not None
            groups.setdefault((backend, fmt_settings, fmt if own_form else None), []).append(fmt)
    for (backend, fmt_settings, own_form), formats in groups.items():
        results |= _measure_group(formats, paths, original, target, backend, fmt_settings, own_form is not None,
                                  target_ratio, progress)
    return {fmt: results[fmt] for fmt in paths}


def _measure_group(formats: list[str], paths: dict[str, Path], original: nn.Module, target: str, backend: str,
                   settings: ProfileSettings, own_form: bool, target_ratio: float,
                   progress: ProgressFactory) -> dict[str, dict]:
    from exporters.formats import FORMATS

    if own_form:  # e.g. a traced original beside a traced artefact, not eager beside traced
        fmt = formats[0]
        same_form = FORMATS[fmt].same_form
        assert same_form is not None  # measure_together times a format apart only when it has a same form
        try:
            original = same_form(original, torch.randn(settings.input_shape(1)), target)
        except Exception as exc:  # the artefact exists and passed its check; only its timing is lost
            return {fmt: {"measured": False, "reason": f"the original network could not be put in {fmt} form to time "
                                                       f"it beside the artefact ({type(exc).__name__}: {exc})"[:500]}}
    try:
        with get_profiler(target, backend, settings) as profiler:
            variants = {ORIGINAL: original, **{fmt: FORMATS[fmt].load(paths[fmt]) for fmt in formats}}
            rounds = measure_variants(variants, profiler, progress, reference=ORIGINAL)
    except UsageError as exc:  # e.g. TensorRT or the GPU is not present on this machine
        return {fmt: {"measured": False, "reason": str(exc)} for fmt in formats}
    ratios = {fmt: rounds.ratio(fmt, ORIGINAL) for fmt in formats}
    return {fmt: {
        "measured": True, "backend": profiler.fingerprint().backend, "precision": profiler.settings.precision,
        "artefact_ms": rounds.median_ms(fmt), "original_ms": rounds.median_ms(ORIGINAL),
        "original_form": fmt if own_form else "as the backend runs it",
        "ratio": ratios[fmt], "target_ratio": target_ratio, "meets_budget": ratios[fmt] <= target_ratio,
        "stop_reason": rounds.stop_reason, "timed_with": [f for f in formats if f != fmt],
    } for fmt in formats}


def measure_artefacts(records: dict[str, dict], folder: Path, original: nn.Module, target: str,
                      settings: ProfileSettings, target_ratio: float, progress: ProgressFactory = silent,
                      log: Log = quiet_log) -> dict[str, dict]:
    """Add a "latency" entry to each artefact record (measured, or why not)."""
    log(f"measuring the latency of {', '.join(records)} beside the original network")
    measured = measure_together({fmt: folder / record["path"] for fmt, record in records.items()}, original, target,
                                settings, target_ratio, progress)
    for fmt, record in records.items():
        record["latency"] = measured[fmt]
    return records
