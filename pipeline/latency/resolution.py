"""Input resolution as a lever the user allows: the original network fed smaller images.

A smaller input is often the cheapest way to a tight budget (on Lite0, INT8 at 192 px measured 0.30 of FP32 at
224 px, where INT8 with four blocks dropped agreed less at 0.5), but it changes what the deployment must feed the
network, so it is planned only under `--min-resolution R`. Each size from the model's own down to R is prepared with
the model's own preprocessing at that size (resize to size / crop fraction, centre-crop the size), each kept
precision is converted at that size, and all are timed beside the reference original at its own size in one
interleaved measurement; agreement and KL are against the FP32 original at its own size, on the selection split.
Plans at a smaller size are precision-only (the original, no block dropped): block savings were measured at the
model's own size.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.data.tiny_set import Preprocessing, TinySet, eval_tensors
from pipeline.latency.precision import CALIBRATION_IMAGES, PrecisionOption, deployed_file, file_logits
from pipeline.latency.profiling import measure_variants
from pipeline.network.evaluation import compare, predict_logits, prediction_kl
from profilers import Profiler

# sizes are planned in steps of this many pixels (a stride-32 network keeps whole feature maps), smaller ones in 8s
STEP, SMALL_STEP = 32, 8
MAX_SIZES = 4  # more sizes cost conversions and timing for steps too close to tell apart


def resolution_steps(native: int, minimum: int) -> list[int]:
    """The sizes below the model's own to plan at, largest first, down to `minimum` (which is always one)."""
    if minimum >= native:
        raise UsageError(f"--min-resolution {minimum} is not below the model's input size ({native} px); give a "
                         f"smaller size (e.g. --min-resolution {max(16, native - native // 4)}), or leave it out.")
    step = STEP if native >= 4 * STEP else SMALL_STEP
    sizes = [size for size in range(native - step, minimum - 1, -step)]
    if not sizes or sizes[-1] != minimum:
        sizes.append(minimum)
    if len(sizes) > MAX_SIZES:  # evenly spread, the smallest kept
        picks = [round(i * (len(sizes) - 1) / (MAX_SIZES - 1)) for i in range(MAX_SIZES)]
        sizes = [sizes[i] for i in picks]
    return sizes


def at_size(prep: Preprocessing, size: int | None) -> Preprocessing:
    """The model's own preprocessing at `size` (None: its own size)."""
    return prep if size is None else replace(prep, resolution=size)


def option_name(option: PrecisionOption) -> str:
    return option.precision if option.resolution is None else f"{option.precision}@{option.resolution}"


def survey_resolutions(original: nn.Module, profiler: Profiler, precisions: list[str], sizes: list[int],
                       selection: TinySet, calibration: TinySet, prep: Preprocessing,
                       progress: ProgressFactory = silent, log: Log = quiet_log) -> list[PrecisionOption]:
    """Every precision in `precisions` at every size in `sizes`, timed beside the reference original (the
    profiler's precision, at the model's own size) and compared with the FP32 original at its own size."""
    base = profiler.settings.precision
    reference = predict_logits(original, eval_tensors(selection, prep))
    variants: dict = {base: original}
    quality = {}
    with tempfile.TemporaryDirectory(prefix="practise-resolution-") as tmp:
        for size in sizes:
            sized = at_size(prep, size)
            images, calibrate = eval_tensors(selection, sized), eval_tensors(calibration, sized)[:CALIBRATION_IMAGES]
            for precision in precisions:
                log(f"converting the original network at {size} px: {precision}")
                path = deployed_file(original, precision, calibrate, Path(tmp), f"original{size}")
                key = f"{precision}@{size}"
                variants[key] = path
                logits = file_logits(path, images)
                quality[key] = (precision, size, compare(logits, reference, None).top1_agreement,
                                prediction_kl(logits, reference))
        log(f"timing the original network at {len(sizes)} smaller size(s) in {len(precisions)} precision(s), "
            "side by side")
        rounds = measure_variants(variants, profiler, progress, reference=base)
    return [PrecisionOption(precision, rounds.ratio(key, base), rounds.median_ms(key), agreement, kl,
                            resolution=size)
            for key, (precision, size, agreement, kl) in quality.items()]


def keep_resolutions(options: list[PrecisionOption], native: list[PrecisionOption]) -> list[PrecisionOption]:
    """Mark each smaller-size option kept unless another option (at any size, the native kept ones included) is
    at least as fast and at least as close to the original (KL on the selection split)."""
    rivals = [o for o in native if o.kept] + options
    for option in options:
        better = [o for o in rivals if o is not option and o.latency_ratio <= option.latency_ratio
                  and o.kl <= option.kl and (o.latency_ratio, o.kl) != (option.latency_ratio, option.kl)]
        if better:
            option.kept = False
            option.reason = f"{option_name(better[0])} is at least as fast and at least as close to the original"
        else:
            option.kept, option.reason = True, "no option as fast is as close to the original"
    return options


def plan_at_sizes(original: nn.Module, profiler: Profiler, native: list[PrecisionOption], minimum: int,
                  native_size: int, selection: TinySet, calibration: TinySet, prep: Preprocessing,
                  progress: ProgressFactory = silent, log: Log = quiet_log) -> list[PrecisionOption]:
    """The survey at the sizes `--min-resolution` allows, for each precision kept at the model's own size."""
    sizes = resolution_steps(native_size, minimum)
    precisions = [o.precision for o in native if o.kept]
    log(f"input resolution: planning at {', '.join(f'{s} px' for s in sizes)} besides the model's own {native_size} px "
        f"(--min-resolution {minimum}), in {', '.join(precisions)}")
    options = survey_resolutions(original, profiler, precisions, sizes, selection, calibration, prep, progress, log)
    return keep_resolutions(options, native)


def hint_size(native_size: int) -> int:
    """The size the report's hint measures when --min-resolution was not given: about three quarters of the model's
    own, on the planning steps (224 -> 160, 32 -> 24)."""
    step = STEP if native_size >= 4 * STEP else SMALL_STEP
    return max(16, native_size - step * max(1, round(native_size / 4 / step)))


def describe_size(prep: Preprocessing, size: int) -> str:
    """How a deployment feeds the network at `size`: the model's own preprocessing at that size."""
    resized = round(size / prep.crop_fraction)
    return (f"{size} px input: resize the shorter side to {resized} px ({prep.interpolation}) and centre-crop "
            f"{size} x {size}, then normalise as before")


def tensors_at(images: TinySet, prep: Preprocessing, size: int | None) -> torch.Tensor:
    return eval_tensors(images, at_size(prep, size))
