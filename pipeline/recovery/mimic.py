"""Feature mimicking: fit a student's trainable parameters so its features match the teacher's.

Shared by the recoverability score (only adaptors train) and by recovery. Teacher targets come from
a `BatchSource`: either a fixed pool of augmented views whose teacher features are computed once and
reused (scoring many candidates), or views drawn live at each step (long recovery runs).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, NamedTuple, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.progress import ProgressFactory, silent
from pipeline.data.tiny_set import Preprocessing, TinySet
from pipeline.network.compute import to_model_device
from pipeline.network.features import FeatureTap, OutputTaps
from pipeline.recovery.mixing import mix_half


@dataclass(frozen=True)
class FitSettings:
    steps: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.4, 0.8)  # fractions of the steps where lr is divided by 10
    min_crop_scale: float = 0.25

    def to_dict(self) -> dict:
        return asdict(self)


class Batch(NamedTuple):
    images: torch.Tensor
    features: torch.Tensor  # the teacher's, at the feature point
    logits: torch.Tensor  # the teacher's
    points: Sequence[torch.Tensor] = ()  # the teacher's outputs of the dropped blocks (multi-point mimicking)


class BatchSource(Protocol):
    def batch(self, step: int) -> Batch:
        """Images and the teacher's targets for training step `step`."""


@dataclass(frozen=True)
class Objective:
    """What the student mimics: final features always; logits and dropped blocks' outputs if weighted."""

    logit_weight: float = 0.0
    point_weight: float = 0.0


@torch.no_grad()
def teacher_targets(teacher_tap: FeatureTap, images: torch.Tensor, batch_size: int = 32):
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        f, l = teacher_tap(images[i : i + batch_size])
        feats.append(f)
        logits.append(l)
    return torch.cat(feats), torch.cat(logits)


class PooledBatches:
    """A fixed pool of views with their teacher targets, served round-robin (deterministic)."""

    def __init__(self, images: torch.Tensor, teacher_tap: FeatureTap, batch_size: int):
        self.images = images
        self.features, self.logits = teacher_targets(teacher_tap, images)
        self.batch_size = batch_size

    def batch(self, step: int):
        n = len(self.images)
        idx = [(step * self.batch_size + i) % n for i in range(self.batch_size)]
        return Batch(self.images[idx], self.features[idx], self.logits[idx])


class LiveBatches:
    """Fresh augmented (optionally mixed) views at every step; the teacher runs on them without gradient.

    With a `views` pool (normalised views chosen beforehand, e.g. confident_views), the tiny-set views
    are drawn from it, randomly flipped, instead of being cropped afresh. With a `synthetic` pool, the
    second half of each batch is drawn from it, randomly flipped, instead of from the tiny set.
    """

    def __init__(self, tiny: TinySet, prep: Preprocessing, teacher_tap: FeatureTap, batch_size: int,
                 min_crop_scale: float, seed: int, mixing: str = "none", teacher_points: OutputTaps | None = None,
                 synthetic: torch.Tensor | None = None, views: torch.Tensor | None = None):
        self.tiny, self.teacher_tap, self.batch_size, self.seed = tiny, teacher_tap, batch_size, seed
        self.transform = prep.train_transform(min_crop_scale)
        self.mixing, self.teacher_points, self.synthetic, self.views = mixing, teacher_points, synthetic, views

    def _tiny_views(self, count: int, rng: random.Random) -> torch.Tensor:
        if self.views is not None:
            return torch.stack([_flipped(self.views[rng.randrange(len(self.views))], rng) for _ in range(count)])
        return torch.stack([self.transform(self.tiny.images[rng.randrange(len(self.tiny))]) for _ in range(count)])

    def batch(self, step: int) -> Batch:
        seed = self.seed * 1_000_003 + step
        rng = random.Random(seed)
        torch.manual_seed(seed)
        real = self.batch_size if self.synthetic is None else self.batch_size - self.batch_size // 2
        images = mix_half(self._tiny_views(real, rng), self.mixing, torch.Generator().manual_seed(seed))
        if self.synthetic is not None:
            picked = [self.synthetic[rng.randrange(len(self.synthetic))] for _ in range(self.batch_size - real)]
            images = torch.cat([images, torch.stack([_flipped(x, rng) for x in picked])])
        images = to_model_device(self.teacher_tap.model, images)
        with torch.no_grad():
            feats, logits = self.teacher_tap(images)
            points = self.teacher_points.take() if self.teacher_points is not None else []
        return Batch(images, feats, logits, points)


def _flipped(image: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """`image` (C, H, W) mirrored left-right with probability 1/2."""
    return image.flip(2) if rng.random() < 0.5 else image


def make_optimizer(params: Iterable[nn.Parameter], settings: FitSettings):
    optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    milestones = sorted({max(1, int(f * settings.steps)) for f in settings.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return optimizer, scheduler


def fit(student_tap: FeatureTap, source: BatchSource, params: list[nn.Parameter], settings: FitSettings,
        progress: ProgressFactory = silent, label: str = "mimicking", start_step: int = 0,
        optimizer_state: dict | None = None, on_step: Callable[[int, float, object, object], None] | None = None,
        objective: Objective = Objective(), student_points: OutputTaps | None = None) -> list[float]:
    """Minimise MSE(student features, teacher features) [+ the objective's other terms]; returns the losses.

    `on_step(step, loss, optimizer, scheduler)` runs after each step (checkpoints, held-out checks).
    """
    optimizer, scheduler = make_optimizer(params, settings)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state["optimizer"])
        scheduler.load_state_dict(optimizer_state["scheduler"])
    losses = []
    with progress(settings.steps - start_step, label) as bar:
        for step in range(start_step, settings.steps):
            batch = source.batch(step)
            feats, logits = student_tap(batch.images)
            loss = F.mse_loss(feats, batch.features)
            if objective.logit_weight:
                loss = loss + objective.logit_weight * F.mse_loss(logits, batch.logits)
            if objective.point_weight and student_points is not None:
                loss = loss + objective.point_weight * point_loss(student_points.take(), batch.points)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            if on_step is not None:
                on_step(step, losses[-1], optimizer, scheduler)
    return losses


def point_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over points of MSE divided by the teacher's variance there, so every point counts alike."""
    terms = [F.mse_loss(s, t) / t.var().clamp_min(1e-8) for s, t in zip(student, teacher, strict=True)]
    return torch.stack(terms).mean()


@torch.no_grad()
def feature_mse(student_tap: FeatureTap, images: torch.Tensor, teacher_features: torch.Tensor,
                batch_size: int = 32) -> float:
    """Mean feature MSE over `images` (eval transforms), batch by batch."""
    total, count = 0.0, 0
    for i in range(0, len(images), batch_size):
        feats, _ = student_tap(images[i : i + batch_size])
        target = teacher_features[i : i + batch_size].to(feats.device)
        total += float(F.mse_loss(feats, target, reduction="sum"))
        count += feats.numel()
    return total / max(count, 1)
