"""1x1 adaptors around dropped blocks (PRACTISE's recoverability fit), attachable and foldable.

For a dropped block B, adaptors sit after every convolution that writes into B's residual stream
earlier in the stage (the last convolutions of earlier blocks, the stage's first block included), and
before every convolution that reads the stream later (the first convolutions of later blocks and of
the next stage's first block). Each is a bias-free 1x1 convolution initialised to the identity, so
the network is unchanged at the start. They are attached with hooks, so no module is replaced, and
can be folded into the neighbouring convolution's weights, leaving no extra layer in the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from pipeline.network import graph as block_graph
from pipeline.network.blocks import NetworkStructure


@dataclass(frozen=True)
class AdaptorSite:
    conv: str  # full module name of the convolution
    side: str  # "output": after the conv, before its BatchNorm; "input": before the conv
    channels: int

    @property
    def key(self) -> str:
        return f"{self.side}:{self.conv}".replace(".", "/")


def _block_convs(model: nn.Module, block: str, role: str) -> list[str]:
    module = model.get_submodule(block)
    traced = block_graph.trace_block(module)
    if traced is None:
        return []
    names = block_graph.writer_convs(traced, module) if role == "writer" else block_graph.reader_convs(traced, module)
    return [f"{block}.{n}" for n in names]


def adaptor_sites(original: nn.Module, structure: NetworkStructure, dropped: list[str]) -> list[AdaptorSite]:
    """Where adaptors go for the set `dropped`, on foldable (groups=1) convolutions of the right width."""
    chain, calls = structure.chain, structure.calls
    sites: dict[str, AdaptorSite] = {}

    def add(conv_name: str, side: str, channels: int) -> None:
        conv = original.get_submodule(conv_name)
        width = conv.out_channels if side == "output" else conv.in_channels
        if conv.groups == 1 and width == channels:
            site = AdaptorSite(conv_name, side, channels)
            sites[site.key] = site

    for block in dropped:
        if block not in chain:
            continue
        i = chain.index(block)
        shape = calls[block].input_shape
        assert shape is not None  # the chain's blocks (_block_chain) have input and output shapes
        channels = shape[0]
        for j in range(i - 1, -1, -1):  # writers, back to the stage's first block
            prev = chain[j]
            if calls[prev].output_shape != shape:
                break
            if prev not in dropped:
                for conv in _block_convs(original, prev, "writer"):
                    add(conv, "output", channels)
            if calls[prev].input_shape != shape:
                break
        for j in range(i + 1, len(chain)):  # readers, up to the next stage's first block
            nxt = chain[j]
            if calls[nxt].input_shape != shape:
                break
            if nxt not in dropped:
                for conv in _block_convs(original, nxt, "reader"):
                    add(conv, "input", channels)
            if calls[nxt].output_shape != shape:
                break
    return sorted(sites.values(), key=lambda s: s.key)


def _identity_1x1(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels)[:, :, None, None])
    return conv


class Adaptors(nn.Module):
    """The adaptor convolutions of a student, with hooks that splice them into its forward pass."""

    def __init__(self, sites: list[AdaptorSite]):
        super().__init__()
        self.sites = {s.key: s for s in sites}
        self.maps = nn.ModuleDict({s.key: _identity_1x1(s.channels) for s in sites})
        self._handles: list = []

    def attach(self, model: nn.Module) -> "Adaptors":
        for key, site in self.sites.items():
            conv, adaptor = model.get_submodule(site.conv), self.maps[key]
            if site.side == "input":
                self._handles.append(conv.register_forward_pre_hook(lambda m, args, a=adaptor: (a(args[0]),) + args[1:]))
            else:
                self._handles.append(conv.register_forward_hook(lambda m, args, out, a=adaptor: a(out)))
        return self

    def load_state_from(self, other: "Adaptors") -> "Adaptors":
        self.maps.load_state_dict(other.maps.state_dict())
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @torch.no_grad()
    def fold_into(self, model: nn.Module) -> None:
        """Merge each adaptor into its convolution's weights (exact for 1x1 maps and zero padding)."""
        self.detach()
        for key, site in self.sites.items():
            conv = cast(nn.Conv2d, model.get_submodule(site.conv))  # sites are Conv2d layers (adaptor_sites)
            a = cast(nn.Conv2d, self.maps[key]).weight[:, :, 0, 0].to(conv.weight.dtype)  # (C, C)
            if site.side == "output":  # A (W x + b) = (A W) x + A b
                conv.weight.copy_(torch.einsum("om,mikl->oikl", a, conv.weight))
                if conv.bias is not None:
                    conv.bias.copy_(a @ conv.bias)
            else:  # W (A x) = (W A) x
                conv.weight.copy_(torch.einsum("omkl,mi->oikl", conv.weight, a))
