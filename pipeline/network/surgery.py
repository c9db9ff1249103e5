"""Block surgery: dropping a block means replacing it by `nn.Identity()`.

Decisions are stored as a list of block names and replayed onto a fresh copy of the original
network, never saved as pickled modules.
"""

from __future__ import annotations

import copy as copy_module

from torch import nn

from exporters.onnx_drop import mark_dropped
from pipeline.core.errors import UsageError


def get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise UsageError(f"the network has no block named '{name}'.") from exc


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and child.isdigit():
        parent[int(child)] = new
    else:
        setattr(parent, child, new)


def drop_blocks(model: nn.Module, names: list[str] | tuple[str, ...], copy: bool = True) -> nn.Module:
    """Return `model` with each named block replaced by the identity (on a deep copy unless copy=False).

    A copy records that it is `model` without `names` (exporters.onnx_drop.DropOrigin): a profiler then makes its
    ONNX file by editing the original's instead of exporting it again.
    """
    target = copy_module.deepcopy(model) if copy else model
    for name in names:
        get_submodule(target, name)
        set_submodule(target, name, nn.Identity())
    if copy:
        mark_dropped(target, model, tuple(names))
    return target
