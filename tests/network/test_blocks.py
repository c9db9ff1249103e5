import pytest
import torch
from torch import nn

from pipeline.models import load_model
from pipeline.network.blocks import analyse
from pipeline.network.surgery import drop_blocks


def _names(spec, resolution=64):
    loaded = load_model(spec)
    return analyse(loaded.module, resolution)


def test_resnet50_candidates_are_the_blocks_without_downsample():
    s = _names("resnet50")
    assert s.candidate_names() == [
        "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer2.3",
        "layer3.1", "layer3.2", "layer3.3", "layer3.4", "layer3.5", "layer4.1", "layer4.2",
    ]
    assert s.feature_point.module == "avgpool" and s.feature_point.side == "input"


def test_mobilenet_v2_candidates_match_use_res_connect():
    s = _names("mobilenet_v2")
    expected = [f"features.{i}" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]
    assert s.candidate_names() == expected
    # MobileNetV2 pools functionally: the feature map is the output of `features`
    assert (s.feature_point.module, s.feature_point.side) == ("features", "output")


def test_efficientnet_lite0_candidates_are_identity_skip_mbconvs():
    s = _names("efficientnet_lite0", 224)
    assert s.candidate_names() == [f"_blocks.{i}" for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    c = s.candidates[0]
    assert c.input_shape == (24, 56, 56) and c.params == 8832 and c.macs > 0


@pytest.mark.parametrize("spec", ["resnext50_32x4d", "regnet_x_400mf", "efficientnet_b0", "mobilenet_v3_small",
                                  "convnext_tiny", "wide_resnet50_2"])
def test_rule_finds_droppable_blocks_in_unlisted_families(spec):
    loaded = load_model(spec)
    s = analyse(loaded.module, 64)
    assert len(s.candidates) >= 5
    x = torch.randn(1, 3, 64, 64)
    pruned = drop_blocks(loaded.module, s.candidate_names())
    with torch.no_grad():
        assert pruned(x).shape == loaded.module(x).shape
    # squeeze-excitation pools run inside blocks; the feature point is the global pool
    assert "block" not in s.feature_point.module


class _ProjectionSkip(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.proj = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.conv(x) + self.proj(x)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.plain = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.projected = _ProjectionSkip()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.pool(self.projected(self.plain(self.stem(x)))).flatten(1))


def test_shape_preserving_blocks_without_identity_skip_are_not_candidates():
    assert analyse(_Net(), 16).candidates == []
