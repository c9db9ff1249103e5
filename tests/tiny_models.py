"""Small real residual networks for tests (torchvision blocks at reduced width)."""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class TinyResNet(nn.Module):
    """A ResNet with torchvision BasicBlocks, widths 8/16/32: 4 droppable blocks at (2, 2, 2)."""

    def __init__(self, widths=(8, 16, 32), depths=(2, 2, 2), num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, inplanes = [], widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            stages.append(_stage(inplanes, w, d, 1 if i == 0 else 2))
            inplanes = w
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


def tiny_resnet() -> nn.Module:
    return TinyResNet()


def tiny_grey_resnet() -> nn.Module:
    """The tiny ResNet for one-channel (grayscale) images."""
    return TinyResNet(in_channels=1)


def tiny_resnet_deep() -> nn.Module:
    return TinyResNet(depths=(3, 3, 3))


def tiny_resnet_without_batchnorm() -> nn.Module:
    """The same network with every BatchNorm replaced by an identity (nothing for synthetic inputs to match)."""
    model = TinyResNet()
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model
