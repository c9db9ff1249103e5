"""What loading a model yields, in a module of its own: the registry and each model family
(`timm_models`, `preprocessing`) build or adjust it, so it must belong to neither, or they would import each other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from torch import nn


@dataclass
class LoadedModel:
    """A model ready for compression: the module (eval mode) plus what its inputs must look like."""

    spec: str
    module: nn.Module
    resolution: int
    mean: tuple[float, ...]  # per input channel (three for RGB networks, one for grayscale ones)
    std: tuple[float, ...]
    weights_source: str  # "packaged:<path>", "file:<path>", "random" or "saved-module:<path>"
    crop_fraction: float = 0.875  # evaluation: resize to resolution / crop_fraction, then centre-crop
    interpolation: str = "bilinear"  # resize filter: bilinear, bicubic or nearest

    @property
    def channels(self) -> int:
        return input_channels(self.module)

    @property
    def has_trained_weights(self) -> bool:
        return self.weights_source != "random"

    def architecture_hash(self) -> str:
        """Identifies the architecture (not the weights): latency tables are keyed by it."""
        return hashlib.sha256(repr(self.module).encode()).hexdigest()[:12]


def input_channels(module: nn.Module) -> int:
    """The channels a CNN takes: its first convolution's input channels (3 when it has none)."""
    first_conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return first_conv.in_channels if first_conv is not None else 3
