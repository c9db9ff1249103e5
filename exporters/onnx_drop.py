"""Drop residual blocks from an exported ONNX file instead of exporting each variant again.

The dynamo exporter writes every node's module scope into `node.metadata_props["namespace"]`:
`": pkg.Net/_blocks.4: pkg.MBConvBlock/_blocks.4._bn1: torch.nn.BatchNorm2d/<op>: aten.<op>"`, one
`name: class` part per module on the call stack (names as in `named_modules()`, nested ones in full,
`layer2.1`), the op last. A block's region is the nodes with the block's name in their scope. Dropping
the block (replacing it by `nn.Identity()`, pipeline.network.surgery) is then: remove the region, let every
consumer of its one output tensor read its one input tensor, and remove what no output needs any more.
A dynamo export of the network with 30 variants costs seconds each; an edit costs milliseconds.

`DropOrigin` records on a network variant which network it is and which blocks it lacks (drop_blocks sets
it), so that a profiler can make the variant's file from the original's. It lives here, below the
profilers and the surgery, because both need it and imports point down only.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import onnx
    from torch import nn

NAMESPACE_KEY = "namespace"


class BlockRegionError(RuntimeError):
    """An ONNX file cannot be edited to drop a block: a limit of the edit, not the user's mistake.

    Callers that can export the variant the normal way do so (and say why); others let it propagate as a bug.
    """


@dataclass(frozen=True)
class BlockBoundary:
    """Where a block's region meets the rest of the graph."""

    block: str
    input: str  # the one tensor from outside the region that it reads (initializers and constants aside)
    output: str  # the one tensor of the region that anything outside it reads
    nodes: int  # nodes in the region


def scope_names(node: "onnx.NodeProto") -> list[str] | None:
    """Module names on the node's call stack, outermost first ("" for the root); None without a namespace."""
    for prop in node.metadata_props:
        if prop.key == NAMESPACE_KEY:
            return [part.split(": ", 1)[0] for part in prop.value.split("/")[:-1]]  # the last part is the op
    return None


def has_module_scopes(model: "onnx.ModelProto") -> bool:
    """Whether the file records module scopes (a dynamo export does; the legacy exporter does not)."""
    return any(scope_names(node) is not None for node in model.graph.node)


def block_boundary(model: "onnx.ModelProto", block: str) -> BlockBoundary:
    """The input and output tensors of `block`'s region; BlockRegionError when there are not exactly one of each."""
    graph = model.graph
    if not has_module_scopes(model):
        raise BlockRegionError("the ONNX file has no module scopes (node metadata 'namespace'): it was not written "
                               "by the dynamo exporter, so blocks cannot be found in it")
    inside = [block in (scope_names(node) or ()) for node in graph.node]
    region = [node for node, is_in in zip(graph.node, inside) if is_in]
    if not region:
        raise BlockRegionError(f"no node of the ONNX file is in the scope of block '{block}'")
    produced = {name for node in region for name in node.output if name}
    constants = _constant_tensors(graph)
    inputs = list(dict.fromkeys(name for node in region for name in node.input
                                if name and name not in produced and name not in constants))
    read_outside = {name for node, is_in in zip(graph.node, inside) if not is_in for name in node.input}
    read_outside |= {output.name for output in graph.output}
    outputs = [name for node in region for name in node.output if name in read_outside]
    if len(inputs) != 1 or len(outputs) != 1:
        raise BlockRegionError(f"block '{block}' is not one tensor in and one out in the ONNX graph (inputs: "
                               f"{inputs or 'none'}; outputs read outside it: {outputs or 'none'})")
    types = _tensor_types(graph)
    if inputs[0] in types and outputs[0] in types and types[inputs[0]] != types[outputs[0]]:
        raise BlockRegionError(f"block '{block}' changes its tensor's type or shape ({inputs[0]} -> {outputs[0]}); "
                               "it cannot be replaced by the identity")
    return BlockBoundary(block, inputs[0], outputs[0], len(region))


def drop_blocks_onnx(model: "onnx.ModelProto", blocks: Sequence[str]) -> "onnx.ModelProto":
    """A copy of `model` with each named block replaced by the identity, checked and shape-inferred.

    The file's metadata_props (how to feed it) are kept. BlockRegionError when a block cannot be found or is not
    one tensor in and one out.
    """
    import onnx

    edited = copy.deepcopy(model)
    graph = edited.graph
    for block in blocks:
        boundary = block_boundary(edited, block)
        kept = [node for node in graph.node if block not in (scope_names(node) or ())]
        for node in kept:
            for i, name in enumerate(node.input):
                if name == boundary.output:
                    node.input[i] = boundary.input
        if boundary.output in {output.name for output in graph.output}:  # the graph's output keeps its name
            kept.append(onnx.helper.make_node("Identity", [boundary.input], [boundary.output],
                                              name=f"{block}.dropped"))
        del graph.node[:]
        graph.node.extend(kept)
    _remove_dead(graph)
    try:
        onnx.checker.check_model(edited)
        inferred = onnx.shape_inference.infer_shapes(edited, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises several classes for one meaning: the edit broke the graph
        raise BlockRegionError(f"dropping {', '.join(blocks)} left a graph onnx refuses: {exc}") from exc
    return inferred


def _constant_tensors(graph: "onnx.GraphProto") -> set[str]:
    """Initializers and what nodes compute from them alone (Constant nodes included): not a data input."""
    constants = {init.name for init in graph.initializer}
    for node in graph.node:  # nodes are in topological order
        if all(not name or name in constants for name in node.input):
            constants.update(name for name in node.output if name)
    return constants


def _tensor_types(graph: "onnx.GraphProto") -> dict[str, bytes]:
    """Serialized type (element type and shape) of every tensor the graph declares one for."""
    return {value.name: value.type.SerializeToString()
            for value in (*graph.input, *graph.value_info, *graph.output) if value.type.HasField("tensor_type")}


def _remove_dead(graph: "onnx.GraphProto") -> None:
    """Remove nodes no graph output depends on, and initializers and value_info nothing reads any more."""
    live = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in live for name in node.output):
            kept.append(node)
            live.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [init for init in graph.initializer if init.name in live]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    produced = live | {name for node in graph.node for name in node.output}
    value_info = [value for value in graph.value_info if value.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(value_info)


# -- which network a variant is ---------------------------------------------------------------------
ORIGIN_ATTRIBUTE = "_practise_drop_origin"


@dataclass(frozen=True)
class DropOrigin:
    """A network variant is `base` with `blocks` replaced by the identity (as it was made; its weights are
    checked against the base's when it is used, since a variant can be trained afterwards).

    The base is held weakly; a deep copy of the variant keeps the record, a pickled one loses it.
    """

    base_ref: "weakref.ReferenceType[nn.Module]"
    blocks: tuple[str, ...]

    @property
    def base(self) -> "nn.Module | None":
        return self.base_ref()

    def __deepcopy__(self, memo) -> "DropOrigin":
        return self

    def __reduce__(self):
        return (_no_origin, ())


def _no_origin() -> None:
    return None


def mark_dropped(variant: "nn.Module", base: "nn.Module", blocks: Sequence[str]) -> None:
    """Record on `variant` that it is `base` without `blocks` (a base that is itself a variant is followed)."""
    earlier = drop_origin(base)
    if earlier is not None and earlier.base is not None:
        base, blocks = earlier.base, (*earlier.blocks, *blocks)
    object.__setattr__(variant, ORIGIN_ATTRIBUTE, DropOrigin(weakref.ref(base), tuple(blocks)))


def drop_origin(variant: object) -> DropOrigin | None:
    """The base network and dropped blocks recorded on `variant`, or None (not recorded, or the base is gone)."""
    origin = getattr(variant, ORIGIN_ATTRIBUTE, None)
    if not isinstance(origin, DropOrigin) or origin.base is None:
        return None
    return origin


def same_weights_as_base(variant: "nn.Module", origin: DropOrigin) -> bool:
    """Whether `variant` holds exactly the base's parameters and buffers outside the dropped blocks."""
    import torch

    base = origin.base
    if base is None:
        return False
    prefixes = tuple(f"{block}." for block in origin.blocks)
    expected = {k: v for k, v in base.state_dict().items() if not k.startswith(prefixes)}
    actual = variant.state_dict()
    return actual.keys() == expected.keys() and all(
        actual[k].shape == expected[k].shape and torch.equal(actual[k], expected[k]) for k in expected)
