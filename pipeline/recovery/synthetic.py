"""Inputs pulled toward the original's training domain by matching its BatchNorm statistics.

An out-of-domain tiny set teaches the student to copy the teacher on images unlike the ones it will
see. Every BatchNorm layer of the teacher stores the mean and variance of its input over the
training data; optimising input pixels so that each layer's batch statistics match those (the
feature-statistics term of DeepInversion, Yin et al. 2020; ZeroQ uses the same) yields images whose
internal statistics are the training domain's, with no data. Starting from tiny-set views keeps
their structure; starting from noise uses no image at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.core.progress import ProgressFactory, silent
from pipeline.network.compute import device_of

SYNTHETIC_INIT = ("views", "noise")


@dataclass(frozen=True)
class SyntheticSettings:
    images: int = 0  # how many to make (0: none)
    steps: int = 200  # optimisation steps per batch of images
    init: str = "views"  # "views": tiny-set training views; "noise": Gaussian noise
    lr: float = 0.05
    batch_size: int = 32
    tv_weight: float = 1e-4  # total-variation prior: keeps images smooth (DeepInversion's image prior)

    def __post_init__(self):
        if self.init not in SYNTHETIC_INIT:
            raise UsageError(f"unknown synthetic init '{self.init}'; choose one of: {', '.join(SYNTHETIC_INIT)}.")


class BatchNormStatistics:
    """Sum over BatchNorm layers of the distance between batch and running statistics of their inputs."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                       and m.running_mean is not None]
        if not self.layers:
            raise UsageError("synthetic inputs match BatchNorm statistics, and this network has no BatchNorm layer "
                             "with running statistics; use recovery without --recovery-synthetic.")
        self.terms: list[torch.Tensor] = []
        self._handles = [m.register_forward_pre_hook(self._hook) for m in self.layers]

    def _hook(self, module, args):
        x = args[0]
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        self.terms.append(torch.linalg.vector_norm(mean - module.running_mean)
                          + torch.linalg.vector_norm(var - module.running_var))

    def take(self) -> torch.Tensor:
        loss, self.terms = torch.stack(self.terms).sum(), []
        return loss

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def bn_matched_images(teacher: nn.Module, starts: torch.Tensor, settings: SyntheticSettings, seed: int,
                      progress: ProgressFactory = silent) -> torch.Tensor:
    """Optimise `starts` (normalised images, N x 3 x R x R) in batches; returns them on the CPU.

    Random flips and shifts of up to 1/16 of the side at every step keep the optimisation from
    writing adversarial pixel patterns (DeepInversion's jitter).
    """
    device = device_of(teacher)
    generator = torch.Generator().manual_seed(seed)
    was_training = teacher.training
    teacher.eval()
    frozen = [p for p in teacher.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    stats = BatchNormStatistics(teacher)
    out = []
    try:
        batches = range(0, len(starts), settings.batch_size)
        with progress(len(batches) * settings.steps, f"synthesising {len(starts)} BatchNorm-matched images") as bar:
            for i in batches:
                x = starts[i : i + settings.batch_size].clone().to(device).requires_grad_(True)
                optimizer = torch.optim.Adam([x], lr=settings.lr)
                shift = max(1, x.shape[-1] // 16)
                for _ in range(settings.steps):
                    dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
                    view = torch.roll(x, (dy, dx), dims=(2, 3))
                    if bool(torch.rand(1, generator=generator) < 0.5):
                        view = view.flip(3)
                    teacher(view)
                    loss = stats.take() + settings.tv_weight * _total_variation(x) * x.shape[-1] ** 2
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    bar.update(1)
                out.append(x.detach().cpu())
    finally:
        stats.close()
        for p in frozen:
            p.requires_grad_(True)
        teacher.train(was_training)
    return torch.cat(out)


def starting_images(views: torch.Tensor, settings: SyntheticSettings, seed: int) -> torch.Tensor:
    """The images synthesis starts from: the given training views, or noise of their shape."""
    if settings.init == "views":
        return views
    return torch.randn(views.shape, generator=torch.Generator().manual_seed(seed))


def batchnorm_distance(teacher: nn.Module, images: torch.Tensor, batch_size: int = 32) -> float:
    """Mean over batches of the BatchNorm-statistics distance (what synthesis lowers; for reports and tests)."""
    stats = BatchNormStatistics(teacher)
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                teacher.eval()
                teacher(images[i : i + batch_size].to(device_of(teacher)))
                total += float(stats.take())
                count += 1
    finally:
        stats.close()
    return total / max(count, 1)
