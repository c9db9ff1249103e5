"""Fake quantization: a network that computes the way onnxruntime's static INT8 will, and still trains.

Attached to a network, every Conv2d and Linear computes with its input and its weight rounded to the
INT8 grid of the chosen scheme (exporters/onnx_int8.py), and back to float; gradients pass straight
through the rounding (torch.fake_quantize_*: straight-through inside the range, zero outside). The
rounding follows onnxruntime's quantizer (quant_utils.compute_scale_zp, MinMax calibration):

- weights: int8, symmetric on [-127, 127], one scale per output channel or one per tensor. onnxruntime
  quantizes the convolution after folding its BatchNorm into it; per channel that is the same as
  quantizing the unfolded weight (folding scales each output channel), per tensor it is not, so a
  per-tensor weight is rounded folded (with the BatchNorm registered right after the convolution) and
  unfolded again;
- activations: one scale per tensor, asymmetric on [0, 255] (uint8) or [-128, 127] (int8; onnxruntime's
  default `ActivationSymmetric=False`), over the calibrated range widened to include 0: the input of every
  Conv2d and Linear, and the output of every Linear (onnxruntime quantizes a Gemm's output too: on the
  tiny test ResNet the classifier's rounded logits were most of what was left between the two).

Activation ranges are calibrated once, on the tiny set, on the network as it is when attached (min/max
over the images, as onnxruntime's MinMax calibration does); weight scales follow the weights at every
step. onnxruntime also quantizes the tensors around adds and pooling, and the bias (int32), which this
does not, so the match is close, not exact. Removing the fake quantization
leaves the network's own modules and state_dict keys untouched: a plain FP32 network that then goes
through onnxruntime's static quantization like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from exporters.onnx_int8 import get_scheme

WEIGHT_RANGE = (-127, 127)  # int8, symmetric (onnxruntime's ONNX_INT_TYPE_SYMMETRIC_RANGE)
ACTIVATION_RANGES = {"uint8": (0, 255), "int8": (-128, 127)}
QUANTIZED_LAYERS = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class QuantizationRule:
    """What an INT8 scheme rounds, and how: the part of the scheme fake quantization must copy."""

    scheme: str
    activations: str  # "uint8" or "int8"
    per_channel: bool  # weight scales per output channel (else one per tensor)

    @classmethod
    def of(cls, scheme: str) -> "QuantizationRule":
        found = get_scheme(scheme)  # an unknown name is a usage error naming the schemes
        return cls(found.name, found.activations, found.per_channel)


@dataclass(frozen=True)
class ActivationGrid:
    scale: float
    zero_point: int
    low: int
    high: int


def activation_grid(low: float, high: float, activations: str) -> ActivationGrid:
    """onnxruntime's asymmetric scale and zero point for the calibrated range [low, high] (0 always inside)."""
    qmin, qmax = ACTIVATION_RANGES[activations]
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / (qmax - qmin)
    if scale < torch.finfo(torch.float32).tiny:
        return ActivationGrid(1.0, 0, qmin, qmax)
    return ActivationGrid(scale, int(round(qmin - low / scale)), qmin, qmax)


def _on_grid(x: torch.Tensor, grid: ActivationGrid) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x, grid.scale, grid.zero_point, grid.low, grid.high)


def fake_quantized_weight(weight: torch.Tensor, per_channel: bool, fold: torch.Tensor | None = None) -> torch.Tensor:
    """`weight` (out, ...) rounded to int8 symmetric; per tensor, rounded as folded by `fold` (out,) if given."""
    qmin, qmax = WEIGHT_RANGE
    if per_channel:
        scale = weight.detach().abs().flatten(1).amax(1).div(qmax).clamp_min(torch.finfo(torch.float32).tiny)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, qmin, qmax)
    if fold is not None:
        shape = (-1,) + (1,) * (weight.dim() - 1)
        usable = fold.abs() > 1e-12
        factor = torch.where(usable, fold, torch.ones_like(fold)).view(shape).detach()
        return _per_tensor(weight * factor) / factor
    return _per_tensor(weight)


def _per_tensor(weight: torch.Tensor) -> torch.Tensor:
    qmin, qmax = WEIGHT_RANGE
    scale = max(float(weight.detach().abs().max()) / qmax, torch.finfo(torch.float32).tiny)
    return torch.fake_quantize_per_tensor_affine(weight, scale, 0, qmin, qmax)


def batchnorm_fold(batchnorm: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """The per-channel factor folding `batchnorm` (running statistics) multiplies the convolution's weight by."""
    running_var = batchnorm.running_var
    assert running_var is not None  # following_batchnorms keeps only BatchNorms that track running statistics
    gamma = batchnorm.weight if batchnorm.affine else torch.ones_like(running_var)
    return gamma / torch.sqrt(running_var + batchnorm.eps)


def following_batchnorms(network: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """Each convolution's BatchNorm, when the next module registered after it is one of its width (the
    torchvision, timm and EfficientNet-Lite layout: conv then bn)."""
    modules = list(network.named_modules())
    pairs = {}
    for (name, module), (_, after) in zip(modules, modules[1:]):
        if isinstance(module, nn.Conv2d) and isinstance(after, nn.modules.batchnorm._BatchNorm) \
                and after.num_features == module.out_channels and after.track_running_stats:
            pairs[name] = after
    return pairs


class FakeQuantization:
    """Fake quantization attached to `network`'s Conv2d and Linear layers (`attach`, `remove`, or `with`)."""

    def __init__(self, network: nn.Module, rule: QuantizationRule, fp32_end_layers: int = 0):
        self.network, self.rule = network, rule
        layers = [(n, m) for n, m in network.named_modules() if isinstance(m, QUANTIZED_LAYERS)]
        if fp32_end_layers:  # mixed precision keeps the first and last N compute layers in FP32: not rounded
            layers = layers[fp32_end_layers:-fp32_end_layers]
        self.layers = dict(layers)
        self.batchnorms = {} if rule.per_channel else following_batchnorms(network)
        self.grids: dict[str, ActivationGrid] = {}  # each layer's input
        self.output_grids: dict[str, ActivationGrid] = {}  # each Linear's output

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor, batch_size: int = 16) -> "FakeQuantization":
        """Each layer's input range over `images` (the network in eval mode, without fake quantization)."""
        ranges: dict[str, list[float]] = {}
        outputs: dict[str, list[float]] = {}

        def widen(seen: dict, name: str, x: torch.Tensor) -> None:
            low, high = seen.get(name, [float("inf"), float("-inf")])
            seen[name] = [min(low, float(x.min())), max(high, float(x.max()))]

        handles = [m.register_forward_pre_hook(lambda module, args, n=n: widen(ranges, n, args[0]))
                   for n, m in self.layers.items()]
        handles += [m.register_forward_hook(lambda module, args, out, n=n: widen(outputs, n, out))
                    for n, m in self.layers.items() if isinstance(m, nn.Linear)]
        was_training = self.network.training
        self.network.eval()
        try:
            device = next(self.network.parameters()).device
            for i in range(0, len(images), batch_size):
                self.network(images[i : i + batch_size].to(device))
        finally:
            for handle in handles:
                handle.remove()
            self.network.train(was_training)
        self.grids = {n: activation_grid(low, high, self.rule.activations) for n, (low, high) in ranges.items()}
        self.output_grids = {n: activation_grid(low, high, self.rule.activations) for n, (low, high) in outputs.items()}
        return self

    def attach(self) -> "FakeQuantization":
        if not self.grids:
            raise RuntimeError("fake quantization must be calibrated before it is attached")
        for name, layer in self.layers.items():
            if name in self.grids:  # a layer the calibration images never reached stays as it is
                layer.forward = self._forward_of(name, layer)
        return self

    def remove(self) -> None:
        for layer in self.layers.values():
            layer.__dict__.pop("forward", None)

    def __enter__(self) -> "FakeQuantization":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _forward_of(self, name: str, layer: nn.Module):
        grid, output, batchnorm = self.grids[name], self.output_grids.get(name), self.batchnorms.get(name)
        per_channel = self.rule.per_channel

        def forward(x: torch.Tensor) -> torch.Tensor:
            fold = batchnorm_fold(batchnorm) if batchnorm is not None else None
            weight = cast(torch.Tensor, layer.weight)  # a Conv2d's or Linear's (QUANTIZED_LAYERS)
            y = _with_weight(layer, fake_quantized_weight(weight, per_channel, fold), _on_grid(x, grid))
            return _on_grid(y, output) if output is not None else y

        return forward


def _with_weight(layer: nn.Module, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The layer's own class forward (a subclass may pad its own way: EfficientNet-Lite's 'SAME' convolutions)
    computed with `weight` in place of its parameter, which is put back afterwards."""
    parameter = layer._parameters["weight"]
    # a plain tensor, read as layer.weight by the forward; the graph leads back to the parameter
    layer._parameters["weight"] = cast(nn.Parameter, weight)
    try:
        return type(layer).forward(layer, x)
    finally:
        layer._parameters["weight"] = parameter


def fake_quantized(network: nn.Module, scheme: str, calibration: torch.Tensor,
                   fp32_end_layers: int = 0) -> FakeQuantization:
    """`network` computing as `scheme` will quantize it, calibrated on `calibration` (attached; `.remove()`).

    `fp32_end_layers`: the first and last N Conv2d/Linear layers (in registration order, which for the
    supported families is graph order) stay in FP32, as the mixed-precision step keeps them."""
    rule = QuantizationRule.of(scheme)
    return FakeQuantization(network, rule, fp32_end_layers).calibrate(calibration).attach()
