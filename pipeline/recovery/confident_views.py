"""The tiny-set views the original network is surest about, for recovery to mimic on.

An out-of-domain tiny set teaches the student to copy the teacher on images unlike the ones it will
serve, and recovery then trades agreement between kinds of image (benchmarks/results/
lite0_out_of_domain_seeds.md). Random crops of the same images differ in how much they look like
the original's training images; the original's own top-1 probability is a cheap sign of that. So
many random views are drawn and only the surest share is kept: a forward pass per view, no
optimisation (unlike the BatchNorm-matched images of pipeline/recovery/synthetic.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.core.progress import ProgressFactory, silent
from pipeline.data.tiny_set import Preprocessing, TinySet, augmented_views
from pipeline.network.evaluation import predict_logits

VIEW_SOURCES = ("random", "confident")
_CHUNK = 128  # views scored at a time: memory stays at keep + chunk views whatever the pool


@dataclass(frozen=True)
class ViewSettings:
    source: str = "random"  # "random": a fresh random view per image drawn; "confident": the surest views
    pool: int = 1024  # random views scored (confident only)
    keep: int = 256  # the surest kept; batches draw from them, randomly flipped

    def __post_init__(self):
        if self.source not in VIEW_SOURCES:
            raise UsageError(f"unknown recovery views '{self.source}'; choose one of: {', '.join(VIEW_SOURCES)}.")
        if not 1 <= self.keep <= self.pool:
            raise UsageError(f"confident views keep {self.keep} of {self.pool}; keep between 1 and the pool size.")


def top1_probability(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's highest softmax probability per image: (N,)."""
    return F.softmax(predict_logits(model, images).float(), 1).max(1).values


@torch.no_grad()
def confident_views(teacher: nn.Module, tiny: TinySet, prep: Preprocessing, settings: ViewSettings,
                    min_crop_scale: float, seed: int, progress: ProgressFactory = silent) -> torch.Tensor:
    """The `keep` of `pool` random training views with the teacher's highest top-1 probability: (keep, 3, R, R)."""
    kept = torch.empty(0)
    scores = torch.empty(0)
    with progress(settings.pool, "scoring views by the original's confidence") as bar:
        for start in range(0, settings.pool, _CHUNK):
            count = min(_CHUNK, settings.pool - start)
            views = augmented_views(tiny, prep, count, min_crop_scale, seed * 1_000_003 + start)
            kept = torch.cat([kept, views]) if len(kept) else views
            scores = torch.cat([scores, top1_probability(teacher, views)])
            best = scores.topk(min(settings.keep, len(scores))).indices
            kept, scores = kept[best], scores[best]
            bar.update(count)
    return kept
