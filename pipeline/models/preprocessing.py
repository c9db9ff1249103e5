"""How a model wants its images: normalisation, evaluation crop and resize filter, and the user's overrides.

Every model comes with its own (ImageNet statistics for torchvision and user code, 0.5 for
EfficientNet-Lite, the pretrained config for timm); `--mean`, `--std`, `--crop-fraction` and
`--interpolation` replace them. The values travel with the run (data.json, report) and with every
exported ONNX file (metadata_props), so a deployment knows how to feed the artefact.
"""

from __future__ import annotations

import math
from dataclasses import replace

from torch import nn

from pipeline.core.errors import UsageError
from pipeline.models.registry import LoadedModel

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
DEFAULT_CROP_FRACTION = 0.875  # resize to resolution / 0.875, centre-crop resolution: torchvision's evaluation


def parse_values(text: str | None, option: str) -> tuple[float, float, float] | None:
    """'0.5' or '0.485,0.456,0.406' as three per-channel values (one value is used for all three)."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in str(text).replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{option} '{text}' is not understood: give one number or three separated by commas "
                         f"(e.g. {option} 0.5 or {option} 0.485,0.456,0.406).")
    return values * 3 if len(values) == 1 else values  # type: ignore[return-value]


def with_preprocessing(loaded: LoadedModel, mean: str | None = None, std: str | None = None,
                       crop_fraction: float | None = None, interpolation: str | None = None) -> LoadedModel:
    """`loaded` with the given overrides applied (None keeps the model's own), each checked; a model that does
    not take three-channel images is refused here, before any work."""
    _require_rgb_input(loaded)
    new_mean, new_std = parse_values(mean, "--mean"), parse_values(std, "--std")
    if new_std is not None and min(new_std) <= 0:
        raise UsageError(f"--std '{std}' must be positive: images are divided by it.")
    if crop_fraction is not None and not 0 < crop_fraction <= 1:
        raise UsageError(f"--crop-fraction {crop_fraction} must be in (0, 1]: the evaluation centre crop keeps that "
                         "fraction of the resized image (0.875 is torchvision's, 1 keeps it whole).")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise UsageError(f"--interpolation '{interpolation}' is not known; choose one of: {', '.join(INTERPOLATIONS)}.")
    if interpolation is None and loaded.interpolation not in INTERPOLATIONS:
        raise UsageError(f"model '{loaded.spec}' resizes its images with '{loaded.interpolation}', which this tool "
                         f"does not do; pass --interpolation with one of: {', '.join(INTERPOLATIONS)}.")
    return replace(loaded, mean=new_mean or loaded.mean, std=new_std or loaded.std,
                   crop_fraction=loaded.crop_fraction if crop_fraction is None else float(crop_fraction),
                   interpolation=interpolation or loaded.interpolation)


def _require_rgb_input(loaded: LoadedModel) -> None:
    first_conv = next((m for m in loaded.module.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != 3:
        raise UsageError(f"model '{loaded.spec}' takes {first_conv.in_channels}-channel input, but profiling, export "
                         "and the block rule feed RGB images (3 channels). Wrap it in a module that takes RGB (for a "
                         "grayscale model: average the channels first) and pass that as package.module:function.")


def preprocessing_record(loaded: LoadedModel) -> dict:
    """The model's preprocessing as plain values (data.json, report.json)."""
    return {"resolution": loaded.resolution, "mean": list(loaded.mean), "std": list(loaded.std),
            "crop_fraction": loaded.crop_fraction, "interpolation": loaded.interpolation, "channels": "RGB"}
