"""Where scoring and recovery train: the CPU, or a CUDA GPU when one is asked for or the target is a GPU.

Training is separate from the latency target: a GPU table can be used on a CPU-only machine, and a
CPU target can train on a GPU. Models move to the training device for a stage and back afterwards;
inputs move at the model's boundary (`to_model_device`), so callers keep CPU tensors and results
come back on the CPU (saved states never hold CUDA tensors).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

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
    """A detached CPU copy of a state_dict (what is kept, compared and saved), in the standard layout whatever
    layout training used (`in_layout`)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Move `model` to `device` for the block, and back to where it was afterwards (also on errors)."""
    home = device_of(model)
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)


LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


@torch.no_grad()
def _forward_ms(model: nn.Module, example: torch.Tensor, rounds: int = 2) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model(example)
        if example.is_cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return min(times)


def faster_layout(model: nn.Module, example: torch.Tensor) -> tuple[str, dict[str, float]]:
    """The memory layout `model` runs `example` faster in here, timed (a warm-up and two forwards each)."""
    was_training = model.training
    model.eval()
    example = to_model_device(model, example)
    times: dict[str, float] = {}
    try:
        for name, layout in LAYOUTS.items():
            model.to(memory_format=layout)
            _forward_ms(model, example, rounds=1)  # warm-up: kernels chosen, buffers allocated
            times[name] = _forward_ms(model, example)
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return min(times, key=times.__getitem__), times


@contextlib.contextmanager
def in_layout(model: nn.Module, layout: str) -> Iterator[nn.Module]:
    """`model` (and the students copied from it inside the block) in memory layout `layout`, back in the
    standard layout afterwards (also on errors).

    Convolutions of the same weights give the same results in either layout up to rounding, but not at the
    same speed: on this project's 2-core Intel Xeon, EfficientNet-Lite0 trained 1.4x faster channels-last
    (forward and backward, batch 16) and scored its blocks 1.27x faster. Which is faster depends on the
    device and its kernels, so `faster_layout` times it rather than assuming.
    """
    model.to(memory_format=LAYOUTS[layout])
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)
