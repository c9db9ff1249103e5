"""Read the feature map before global pooling: the quantity PRACTISE mimics."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.network.blocks import FeaturePoint
from pipeline.network.compute import to_model_device


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
        logits = self.model(to_model_device(self.model, images))
        features, self._captured = self._captured, None
        assert features is not None  # the hook at the feature point runs in every forward pass
        return features, logits  # (N, C, h, w), (N, classes)

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> "FeatureTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OutputTaps:
    """Captures the outputs of named modules on each forward (the dropped blocks' outputs).

    On the teacher these are the blocks' real outputs; on a student the same names are identities, so
    their outputs are the student's stream at that point: mimicking them constrains every dropped
    block's position, not only the final features.
    """

    def __init__(self, model: nn.Module, names: list[str]):
        self.names = list(names)
        self._captured: dict[str, torch.Tensor] = {}
        self._handles = [model.get_submodule(n).register_forward_hook(self._capture(n)) for n in self.names]

    def _capture(self, name: str):
        def hook(module, args, output):
            self._captured[name] = output
        return hook

    def take(self) -> list[torch.Tensor]:
        """The outputs of the last forward, in `names` order (and forget them)."""
        outputs = [self._captured[n] for n in self.names]
        self._captured = {}
        return outputs

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __enter__(self) -> "OutputTaps":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
