"""Where scoring and recovery train: the CPU, or a CUDA GPU when one is asked for or the target is a GPU.

Training is separate from the latency target: a GPU table can be used on a CPU-only machine, and a
CPU target can train on a GPU. Models move to the training device for a stage and back afterwards;
inputs move at the model's boundary (`to_model_device`), so callers keep CPU tensors and results
come back on the CPU (saved states never hold CUDA tensors).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from pipeline.core.devices import require_cuda
from pipeline.core.errors import UsageError

TRAIN_DEVICES = ("auto", "cpu", "cuda")


def resolve_train_device(choice: str, target: str) -> torch.device:
    """`auto`: the GPU when the target is a GPU and one is present, else the CPU; `cuda` must be present."""
    if choice not in TRAIN_DEVICES:
        raise UsageError(f"unknown training device '{choice}'; choose one of: {', '.join(TRAIN_DEVICES)}.")
    if choice == "cpu" or (choice == "auto" and not (target == "gpu" and torch.cuda.is_available())):
        return torch.device("cpu")
    return require_cuda("--train-device cuda", fix="Pass --train-device cpu, or run on a GPU machine.")


def device_of(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (the CPU for a parameter-free model)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def to_model_device(model: nn.Module, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(device_of(model), non_blocking=True)


def cpu_state(state: dict) -> dict:
    """A detached CPU copy of a state_dict (what is kept, compared and saved)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Move `model` to `device` for the block, and back to where it was afterwards (also on errors)."""
    home = device_of(model)
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)
