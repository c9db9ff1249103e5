"""How a model wants its images: normalisation, evaluation crop and resize filter, and the user's overrides.

Every model comes with its own (ImageNet statistics for torchvision and user code, 0.5 for
EfficientNet-Lite, the pretrained config for timm); `--mean`, `--std`, `--crop-fraction` and
`--interpolation` replace them. The values travel with the run (data.json, report) and with every
exported ONNX file (metadata_props), so a deployment knows how to feed the artefact.
"""

from __future__ import annotations

import math
from dataclasses import replace


from pipeline.core.errors import UsageError
from pipeline.models.loaded import LoadedModel

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def parse_values(text: str | None, option: str, channels: int = 3) -> tuple[float, ...] | None:
    """'0.5' or '0.485,0.456,0.406' as one value per input channel (one value is used for every channel)."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in str(text).replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, channels) or not all(math.isfinite(v) for v in values):
        example = "0.485,0.456,0.406" if channels == 3 else "0.5"
        raise UsageError(f"{option} '{text}' is not understood for a {channels}-channel network: give one number"
                         + (" or three separated by commas" if channels == 3 else "")
                         + f" (e.g. {option} {example}).")
    return values * channels if len(values) == 1 else values


def with_preprocessing(loaded: LoadedModel, mean: str | None = None, std: str | None = None,
                       crop_fraction: float | None = None, interpolation: str | None = None) -> LoadedModel:
    """`loaded` with the given overrides applied (None keeps the model's own), each checked; a model that does
    take neither RGB nor grayscale images is refused here, before any work."""
    channels = _supported_channels(loaded)
    new_mean, new_std = parse_values(mean, "--mean", channels), parse_values(std, "--std", channels)
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
    own_mean, own_std = _per_channel(loaded.mean, channels), _per_channel(loaded.std, channels)
    return replace(loaded, mean=new_mean or own_mean, std=new_std or own_std,
                   crop_fraction=loaded.crop_fraction if crop_fraction is None else float(crop_fraction),
                   interpolation=interpolation or loaded.interpolation)


def _supported_channels(loaded: LoadedModel) -> int:
    if loaded.channels not in (1, 3):
        raise UsageError(f"model '{loaded.spec}' takes {loaded.channels}-channel input; this tool feeds RGB (3 channels) "
                         "or grayscale (1 channel) images. Wrap it in a module that takes one of them and pass that "
                         "as package.module:function.")
    return loaded.channels


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """A model's statistics for its channel count: a grayscale network given RGB statistics gets their mean."""
    if len(values) == channels:
        return tuple(values)
    return (sum(values) / len(values),) * channels


def preprocessing_record(loaded: LoadedModel) -> dict:
    """The model's preprocessing as plain values (data.json, report.json)."""
    return {"resolution": loaded.resolution, "mean": list(loaded.mean), "std": list(loaded.std),
            "crop_fraction": loaded.crop_fraction, "interpolation": loaded.interpolation,
            "channels": "RGB" if loaded.channels == 3 else "grayscale"}
