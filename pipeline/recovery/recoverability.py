"""Recoverability of each candidate: how well the network recovers when that block alone is dropped.

Drop the block, insert identity-initialised 1x1 adaptors around it, train only the adaptors (both
networks in eval mode) to mimic the teacher's features on augmented views of the tiny set, then
measure the remaining feature MSE with evaluation transforms. Lower means easier to recover.

Each candidate's fit is seeded from (seed, block name), never from its position or rank, so a block
scores the same whichever process scores it and in whatever order (torchrun shards candidates by
`scoring_cost`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pipeline.core.distributed import derived_seed
from pipeline.core.progress import ProgressFactory, silent
from pipeline.network.adaptors import Adaptors, adaptor_sites
from pipeline.network.blocks import NetworkStructure
from pipeline.network.compute import device_of
from pipeline.network.features import FeatureTap
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.mimic import (
    FitSettings,
    PooledBatches,
    feature_mse,
    fit,
    teacher_targets,
)


def recoverability_of(block: str, teacher: nn.Module, structure: NetworkStructure, pool: PooledBatches,
                      eval_images: torch.Tensor, eval_features: torch.Tensor, settings: FitSettings) -> dict:
    student = drop_blocks(teacher, [block]).eval()
    for p in student.parameters():
        p.requires_grad_(False)
    sites = adaptor_sites(teacher, structure, [block])
    adaptors = Adaptors(sites).to(device_of(student)).attach(student)
    with FeatureTap(student, structure.feature_point) as tap:
        before = feature_mse(tap, eval_images, eval_features)
        losses = fit(tap, pool, list(adaptors.parameters()), settings) if sites else []
        after = feature_mse(tap, eval_images, eval_features)
    return {
        "block": block,
        "recoverability": after,
        "mse_without_adaptors": before,
        "adaptor_sites": len(sites),
        "final_train_loss": losses[-1] if losses else None,
    }


def scoring_cost(teacher: nn.Module, structure: NetworkStructure, settings: FitSettings, eval_images: int) -> dict:
    """Each candidate's expected scoring work in MACs, to balance ranks (not the count of blocks).

    The fit runs the student forward (the network less the block) and backward to the earliest adaptor
    (about twice the MACs after it; counted as everything but the candidates before the block) for
    steps x batch images; a block without adaptor sites is only evaluated, twice, on the eval images.
    """
    costs, before = {}, 0
    for candidate in structure.candidates:
        forward = structure.macs_total - candidate.macs
        cost = 2 * eval_images * forward
        if adaptor_sites(teacher, structure, [candidate.name]):
            backward = 2 * (structure.macs_total - before - candidate.macs)
            cost += settings.steps * settings.batch_size * (forward + backward)
        costs[candidate.name] = float(cost)
        before += candidate.macs
    return costs


def score_recoverability(teacher: nn.Module, structure: NetworkStructure, pool_images: torch.Tensor,
                         eval_images: torch.Tensor, settings: FitSettings, done: dict[str, dict],
                         on_block: Callable[[str, dict], None] | None = None,
                         progress: ProgressFactory = silent, seed: int = 0,
                         blocks: list[str] | None = None) -> dict[str, dict]:
    """Recoverability of every candidate (or of `blocks`) not already in `done` (resumable block by block)."""
    teacher.eval()
    results = dict(done)
    todo = [b for b in (structure.candidate_names() if blocks is None else blocks) if b not in results]
    if not todo:
        return results
    with FeatureTap(teacher, structure.feature_point) as teacher_tap:
        pool = PooledBatches(pool_images, teacher_tap, settings.batch_size)
        eval_features, _ = teacher_targets(teacher_tap, eval_images)
    with progress(len(todo), f"recoverability of {len(todo)} blocks") as bar:
        for block in todo:
            with torch.random.fork_rng(devices=[]):  # per candidate: the same score on any rank, in any order
                torch.manual_seed(derived_seed(seed, block))
                results[block] = recoverability_of(block, teacher, structure, pool, eval_images, eval_features,
                                                   settings)
            if on_block is not None:
                on_block(block, results[block])
            bar.update(1)
    return results
