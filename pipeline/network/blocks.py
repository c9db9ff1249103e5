"""Find the droppable blocks of a network and the structure around them.

One forward pass with hooks records, for every module, when it ran and the shapes it saw. A module is
a candidate when it ran once, maps one tensor to a tensor of the same shape, has parameters, and its
traced graph adds its input to its output (identity skip). No per-model lists of names are used, so
residual architectures nobody listed work too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.models.loaded import input_channels
from pipeline.network import graph as block_graph

_POOLING = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d)
# what a forward pass raises when shapes do not fit (torch's shape checks, a model's own checks)
FORWARD_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, AssertionError)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch reports running out of memory as a RuntimeError; it is never a verdict about the network."""
    text = str(exc).lower()
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text \
        or "can't allocate memory" in text


@dataclass
class Candidate:
    """A block that can be replaced by the identity."""

    name: str
    input_shape: tuple[int, ...]  # (C, H, W), batch excluded
    macs: int  # multiply-accumulates per image
    params: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModuleCall:
    order: int
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    calls: int = 0


@dataclass
class FeaturePoint:
    """Where the feature map before global pooling is read: the input of a pooling module, or a module's output."""

    module: str
    side: str  # "input" | "output"


@dataclass
class NetworkStructure:
    candidates: list[Candidate]
    calls: dict[str, ModuleCall]
    feature_point: FeaturePoint
    macs_total: int
    chain: list[str] = field(default_factory=list)  # block-level modules in execution order

    def candidate_names(self) -> list[str]:
        return [c.name for c in self.candidates]


def _shape(x) -> tuple[int, ...] | None:
    return tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None


def _record_calls(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, ModuleCall], dict[str, int]]:
    calls: dict[str, ModuleCall] = {}
    leaf_macs: dict[str, int] = {}
    handles = []
    counter = [0]

    def pre_hook(name):
        def hook(module, args):
            if name not in calls:
                single = args[0] if len(args) == 1 else None
                calls[name] = ModuleCall(counter[0], _shape(single), None)
                counter[0] += 1
            calls[name].calls += 1

        return hook

    def post_hook(name):
        def hook(module, args, output):
            calls[name].output_shape = _shape(output)
            if isinstance(module, nn.Conv2d):
                per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                leaf_macs[name] = int(output[0].numel()) * per_out
            elif isinstance(module, nn.Linear):
                leaf_macs[name] = int(output[0].numel()) * module.in_features

        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
            handles.append(module.register_forward_hook(post_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return calls, leaf_macs


def _macs_of(name: str, leaf_macs: dict[str, int]) -> int:
    prefix = name + "."
    return sum(v for k, v in leaf_macs.items() if k == name or k.startswith(prefix))


def _feature_point(model: nn.Module, calls: dict[str, ModuleCall], after_order: int) -> FeaturePoint:
    """The global pooling's input; pools that run inside blocks (squeeze-excitation) run before `after_order`."""
    modules = dict(model.named_modules())
    ordered = sorted(calls.items(), key=lambda kv: kv[1].order)
    pools = [
        name
        for name, call in ordered
        if isinstance(modules[name], _POOLING)
        and call.order > after_order
        and call.input_shape is not None
        and len(call.input_shape) == 3
    ]
    if pools:
        return FeaturePoint(pools[-1], "input")
    spatial = [(n, c) for n, c in ordered if c.output_shape is not None and len(c.output_shape) == 3]
    if not spatial:
        raise UsageError("the model produces no 4-D feature map; only convolutional networks are supported.")
    # Hooks complete in post-order, so the outermost container that finishes last wins ties.
    last = max(spatial, key=lambda nc: (nc[1].order, -nc[0].count(".")))
    containing = [n for n, c in spatial if last[0].startswith(n + ".")]
    return FeaturePoint(containing[0] if containing else last[0], "output")


def _is_candidate(name: str, module: nn.Module, call: ModuleCall) -> bool:
    if call.calls != 1 or call.input_shape is None or call.input_shape != call.output_shape:
        return False
    if len(call.input_shape) != 3 or not any(True for _ in module.parameters()):
        return False
    traced = block_graph.trace_block(module)
    return traced is not None and block_graph.has_identity_skip(traced)


def _input_shape(call: ModuleCall) -> tuple[int, ...]:
    assert call.input_shape is not None  # _is_candidate keeps only calls with an input shape
    return call.input_shape


def _check_drops_run(model: nn.Module, names: list[str], example: torch.Tensor) -> list[str]:
    """Keep the candidates whose replacement by the identity leaves a network that still runs."""
    from pipeline.network.surgery import drop_blocks

    def runs(drop: list[str]) -> bool:
        try:
            with torch.no_grad():
                out = drop_blocks(model, drop, copy=True)(example)
            return isinstance(out, torch.Tensor)
        except FORWARD_ERRORS as exc:  # a shape the rest of the network cannot take; anything else propagates
            if is_out_of_memory(exc):
                raise
            return False

    if runs(names):
        return names
    return [n for n in names if runs([n])]


def analyse(model: nn.Module, resolution: int) -> NetworkStructure:
    """Candidates, per-module call records and the feature point of `model` at `resolution` pixels."""
    model.eval()
    example = torch.zeros(1, input_channels(model), resolution, resolution)
    try:
        calls, leaf_macs = _record_calls(model, example)
    except FORWARD_ERRORS as exc:
        if is_out_of_memory(exc):
            raise
        first_line = (str(exc).splitlines() or [""])[0][:300]
        raise UsageError(
            f"the model does not run on a 1x3x{resolution}x{resolution} input ({type(exc).__name__}: {first_line}). "
            "Check --resolution and that the model takes RGB images."
        ) from exc
    modules = dict(model.named_modules())
    names = [n for n, c in sorted(calls.items(), key=lambda kv: kv[1].order) if _is_candidate(n, modules[n], c)]
    names = [n for n in names if not any(n.startswith(o + ".") for o in names)]  # outermost only
    names = _check_drops_run(model, names, example)
    candidates = [
        Candidate(n, _input_shape(calls[n]), _macs_of(n, leaf_macs), sum(p.numel() for p in modules[n].parameters()))
        for n in names
    ]
    return NetworkStructure(
        candidates=candidates,
        calls=calls,
        feature_point=_feature_point(model, calls, _last_order_inside(names, calls)),
        macs_total=sum(leaf_macs.values()),
        chain=_block_chain(names, calls),
    )


def _last_order_inside(blocks: list[str], calls: dict[str, ModuleCall]) -> int:
    inside = [c.order for n, c in calls.items() if any(n == b or n.startswith(b + ".") for b in blocks)]
    return max(inside, default=-1)


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _block_chain(candidate_names: list[str], calls: dict[str, ModuleCall]) -> list[str]:
    """The siblings of candidate blocks (their parents' children) in execution order."""
    parents = {_parent(n) for n in candidate_names}
    members = [
        n for n in calls
        if _parent(n) in parents and calls[n].input_shape is not None and calls[n].output_shape is not None
    ]
    return sorted(members, key=lambda n: calls[n].order)
