"""Dataflow questions about one block, on small blocks written here and torchvision's own."""

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from pipeline.network.graph import has_identity_skip, reader_convs, trace_block, writer_convs


class _SkipThen(nn.Module):
    """input + conv(input), then `after` ReLUs."""

    def __init__(self, after: int):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.after = after

    def forward(self, x):
        y = x + self.conv(x)
        for _ in range(self.after):
            y = torch.relu(y)
        return y


class _Branching(nn.Module):
    """Two convolutions read the input; one feeds a third; the sum of the last two is added to the input."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (nn.Conv2d(4, 4, 1) for _ in range(3))

    def forward(self, x):
        return x.add(self.c(self.a(x)) + self.b(x))


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x + self.conv(x) if x.sum() > 0 else x


def _graph(block):
    graph = trace_block(block)
    assert graph is not None
    return graph


def test_a_resnet_basic_block_adds_its_input_read_by_conv1_and_written_by_conv2():
    block = BasicBlock(8, 8)
    graph = _graph(block)
    assert has_identity_skip(graph)
    assert reader_convs(graph, block) == ["conv1"] and writer_convs(graph, block) == ["conv2"]


def test_a_block_whose_skip_is_a_projection_has_no_identity_skip():
    block = Bottleneck(8, 4, downsample=nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16)))
    graph = _graph(block)
    assert not has_identity_skip(graph)
    assert sorted(reader_convs(graph, block)) == ["conv1", "downsample.0"]


def test_an_inverted_residual_with_a_skip_is_found_through_its_sequential():
    block = InvertedResidual(8, 8, 1, 4)
    graph = _graph(block)
    assert has_identity_skip(graph)
    assert reader_convs(graph, block) == ["conv.0.0"] and writer_convs(graph, block) == ["conv.2"]
    assert not has_identity_skip(_graph(InvertedResidual(8, 16, 1, 4)))  # channels change: no skip


@pytest.mark.parametrize("after,skip", [(0, True), (2, True), (3, False)])
def test_at_most_two_unary_ops_may_follow_the_addition(after, skip):
    assert has_identity_skip(_graph(_SkipThen(after))) == skip


def test_readers_take_the_input_itself_and_writers_feed_no_other_convolution():
    block = _Branching()
    graph = _graph(block)
    assert has_identity_skip(graph)  # `x.add(...)`, a method call, counts as the skip
    assert sorted(reader_convs(graph, block)) == ["a", "b"]
    assert sorted(writer_convs(graph, block)) == ["b", "c"]


def test_a_block_with_data_dependent_control_flow_cannot_be_traced():
    assert trace_block(_DataDependent()) is None


class _ShortcutModuleBlock(torch.nn.Module):
    """A skip written as `f(x) + self.shortcut(x)` with an nn.Identity shortcut (timm's RegNet and ConvNeXt)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.shortcut = torch.nn.Identity()

    def forward(self, x):
        return self.conv(x) + self.shortcut(x)


def test_an_identity_shortcut_module_is_an_identity_skip():
    graph = trace_block(_ShortcutModuleBlock())
    assert graph is not None and has_identity_skip(graph)
