"""Read the feature map before global pooling: the quantity PRACTISE mimics."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.blocks import FeaturePoint


class FeatureTap:
    """Runs a network and returns (features, logits), features being the map at the feature point.

    Block surgery replaces modules by identities but never renames them, so the same feature point
    works on the teacher and on every student built from it.
    """

    def __init__(self, model: nn.Module, point: FeaturePoint):
        self.model = model
        self.point = point
        self._captured: torch.Tensor | None = None
        module = model.get_submodule(point.module)
        if point.side == "input":
            self._handle = module.register_forward_pre_hook(self._capture_input)
        else:
            self._handle = module.register_forward_hook(self._capture_output)

    def _capture_input(self, module, args):
        self._captured = args[0]

    def _capture_output(self, module, args, output):
        self._captured = output

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(images)
        features, self._captured = self._captured, None
        return features, logits  # (N, C, h, w), (N, classes)

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> "FeatureTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
