"""The recovery-recipes benchmark's second teacher: an inverted-residual (MobileNetV2-style) network for 32 px.

Beside the ResNet of basic blocks (benchmarks/fashion_mnist.py), the same Fashion-MNIST input (28 px
zero-padded to 32, gray replicated to 3 channels), trained the same way and cached outside git.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

from benchmarks.fashion_mnist import cached_teacher, data_fingerprint, padded

# (expansion, channels, blocks, stride) per stage; blocks after the first of a stage are droppable
MBV2_STAGES = ((1, 8, 1, 1), (6, 16, 4, 2), (6, 24, 4, 2), (6, 32, 3, 1))


class CifarMobileNetV2(nn.Module):
    """A 3x3 stem, stages of torchvision's InvertedResidual blocks, a 1x1 head conv, pooling and a classifier."""

    def __init__(self, stages=MBV2_STAGES, stem: int = 16, head: int = 128, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                                 nn.ReLU6(inplace=True))]
        inp = stem
        for t, c, n, s in stages:
            for i in range(n):
                layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(nn.Sequential(nn.Conv2d(inp, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def fashion_mobilenet_v2() -> nn.Module:
    """Usable as `--model benchmarks.fashion_models:fashion_mobilenet_v2`."""
    return CifarMobileNetV2()


def obtain_mobilenet_teacher(data: dict, epochs: int, log=print) -> tuple[nn.Module, dict]:
    """Train the inverted-residual teacher once (as fashion_mnist trains the ResNet) and cache it."""
    key = f"fashion_mbv2_e{epochs}"
    model = CifarMobileNetV2()
    x_train, y_train = padded(data["train_images"]), torch.from_numpy(data["train_labels"].astype(np.int64))
    return cached_teacher(key, model, data_fingerprint(x_train), x_train, y_train, epochs,
                          {"architecture": "CifarMobileNetV2", "stages": [list(s) for s in MBV2_STAGES]}, log)
