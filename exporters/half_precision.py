"""A network deployed in half precision (FP16 or BF16), as one PyTorch module every format is written from.

On a GPU the cheapest lever is often the arithmetic, not the depth: a network cast to FP16 runs far faster on
tensor cores at almost no agreement cost. The deployed form is a module with half-precision weights and
arithmetic behind FP32 inputs and outputs (what an FP16 ONNX graph also is), so the same object is timed by the
torch profilers, exported to ONNX/TorchScript/`.pt2`/AOTInductor, and run on the CPU (PyTorch has FP16 and BF16
convolutions there) to measure its agreement without a GPU. Its precision is pinned: a profiler in another
precision runs it as it is instead of casting it again.

Mixed precision for half precision is the INT8 ladder's idea: the first and last N compute layers (Conv2d,
Linear, in the order the forward pass calls them) keep FP32 weights and arithmetic, with casts around them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HALF = ("fp16", "bf16")


def is_half(precision: str) -> bool:
    return precision in HALF


class _Float32Layer(nn.Module):
    """A compute layer kept in FP32 inside a half-precision network: casts in, computes in FP32, casts back."""

    def __init__(self, layer: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.layer = layer.float()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float()).to(self.dtype)


class InPrecision(nn.Module):
    """`module` computing in `precision` behind FP32 inputs and outputs; its precision is pinned (see the module
    docstring). FP32 is the module itself, pinned: a profiler in FP16 times it as the FP32 reference."""

    def __init__(self, module: nn.Module, precision: str, fp32_end_layers: int = 0,
                 example: torch.Tensor | None = None):
        super().__init__()
        self.precision = precision
        self.fp32_end_layers = fp32_end_layers if precision != "fp32" else 0
        if precision == "fp32":
            self.module = module
            return
        dtype = DTYPES[precision]
        kept = end_layers(module, fp32_end_layers, example) if fp32_end_layers else []
        self.kept_fp32 = kept
        self.module = copy.deepcopy(module).to(dtype)
        for name in kept:
            parent, _, child = name.rpartition(".")
            holder = self.module.get_submodule(parent) if parent else self.module
            setattr(holder, child, _Float32Layer(copy.deepcopy(module.get_submodule(name)), dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) float32 -> (B, classes) float32
        return self.module(images.to(DTYPES[self.precision])).float()


def in_precision(module: nn.Module, precision: str, fp32_end_layers: int = 0,
                 example: torch.Tensor | None = None) -> nn.Module:
    """`module` pinned to `precision` (already pinned modules are returned as they are)."""
    if isinstance(module, InPrecision):
        return module
    return InPrecision(module, precision, fp32_end_layers, example)


def pinned_precision(module: object) -> str | None:
    """The precision a module was pinned to, or None for a plain network (a profiler casts it to its own)."""
    return module.precision if isinstance(module, InPrecision) else None


def compute_layers(module: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Conv2d and Linear layers by name, in the order one forward pass calls them (each named once)."""
    order: list[str] = []
    names = {id(m): n for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(names[id(m)]))
             for n, m in module.named_modules() if id(m) in names]
    if example is None:
        first = next(m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        channels = first.in_channels if isinstance(first, nn.Conv2d) else 3
        example = torch.randn(1, channels, 64, 64)
    try:
        was_training = module.training
        with torch.no_grad():
            module.eval()(example.float())
        module.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(order))


def end_layers(module: nn.Module, per_end: int, example: torch.Tensor | None = None) -> list[str]:
    """The first and last `per_end` compute layers (all of them when the network has fewer than 2 * per_end)."""
    layers = compute_layers(module, example)
    return list(dict.fromkeys(layers[:per_end] + layers[-per_end:])) if per_end else []


def end_layers_by_rung(module: nn.Module, rungs: tuple[int, ...], example: torch.Tensor | None = None) \
        -> dict[int, list[str]]:
    """`end_layers` for every rung of the mixed-precision ladder, from one forward pass."""
    layers = compute_layers(module, example)
    return {n: list(dict.fromkeys(layers[:n] + layers[-n:])) for n in rungs}
