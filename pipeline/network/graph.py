"""Dataflow questions about one block, answered with torch.fx.

A block is droppable when its output is `input + f(input)` (possibly followed by an elementwise
activation): then replacing it by `nn.Identity()` keeps every shape. The same traced graph tells which
convolutions read the block's input directly (adaptors go before them) and which write the block's
last contribution to the residual stream (adaptors go after them).
"""

from __future__ import annotations

import operator
from typing import cast

import torch
import torch.fx as fx
from torch import nn

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
# How many unary ops may follow the skip addition (ReLU after the add in torchvision ResNets).
_MAX_OPS_AFTER_ADD = 2


class _Tracer(fx.Tracer):
    """Keeps convolutions (including subclasses such as same-padding convs) as single nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            return True
        if isinstance(m, nn.Identity):  # traced through: timm writes skips as `x + self.shortcut(shortcut)`
            return False
        return super().is_leaf_module(m, qualname)


def trace_block(block: nn.Module) -> fx.Graph | None:
    """The block's graph, or None when it cannot be traced symbolically (data-dependent control flow)."""
    try:
        return _Tracer().trace(block)
    except Exception:
        return None


def _placeholder(graph: fx.Graph) -> fx.Node | None:
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    return placeholders[0] if placeholders else None


def _is_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ADD_METHODS
    )


def has_identity_skip(graph: fx.Graph) -> bool:
    """True when the output is `input + something`, followed by at most a couple of unary ops."""
    inp = _placeholder(graph)
    output = next(n for n in graph.nodes if n.op == "output")
    node = output.args[0]
    if not isinstance(node, fx.Node) or inp is None:
        return False
    for _ in range(_MAX_OPS_AFTER_ADD + 1):
        if _is_add(node) and inp in node.args:
            return True
        tensor_args = [a for a in node.args if isinstance(a, fx.Node)]
        if len(tensor_args) != 1:
            return False
        node = tensor_args[0]
    return False


def _conv_nodes(graph: fx.Graph, block: nn.Module) -> list[fx.Node]:
    modules = dict(block.named_modules())
    return [n for n in graph.nodes if n.op == "call_module" and isinstance(modules.get(n.target), nn.Conv2d)]


def _module_name(node: fx.Node) -> str:
    return cast(str, node.target)  # a call_module node's target is the module's name


def reader_convs(graph: fx.Graph, block: nn.Module) -> list[str]:
    """Convolutions that take the block's input as it is (names relative to the block)."""
    inp = _placeholder(graph)
    return [_module_name(n) for n in _conv_nodes(graph, block) if inp in n.args]


def writer_convs(graph: fx.Graph, block: nn.Module) -> list[str]:
    """Convolutions with no other convolution downstream: the last ones on each path to the output."""
    convs = _conv_nodes(graph, block)
    conv_set = set(convs)

    def feeds_a_conv(node: fx.Node) -> bool:
        seen, stack = set(), list(node.users)
        while stack:
            user = stack.pop()
            if user in conv_set:
                return True
            if user not in seen:
                seen.add(user)
                stack.extend(user.users)
        return False

    return [_module_name(n) for n in convs if not feeds_a_conv(n)]
