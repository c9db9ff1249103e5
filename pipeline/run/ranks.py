"""A `pipeline run` launched by torchrun: join the ranks, tag their log lines, say what is distributed.

Scoring (candidates sharded by expected cost) and recovery (data-parallel, gradients averaged) run on
every rank. Profiling, the plans' end-to-end measurements, evaluation, export and the report run on rank 0
while the others wait: ranks timing the network side by side on one machine would disturb each other's
measurements, and the rest is short. Rank 0 alone owns and writes the run folder.
"""

from __future__ import annotations

from pipeline.core import distributed
from pipeline.core.distributed import World
from pipeline.core.progress import Log, ProgressFactory, silent
from pipeline.network.compute import resolve_train_device
from pipeline.run.config import RunConfig

NOT_DISTRIBUTED = ("profiling, the plans' end-to-end measurements, evaluation, export and the report run on rank 0 "
                   "(ranks timing side by side would disturb each other's measurements)")


def join_ranks(config: RunConfig, log: Log) -> World:
    """The torchrun world (gloo for CPU training, NCCL for CUDA), or this process alone when not launched so."""
    if not distributed.launched_by_torchrun():
        return distributed.SINGLE
    device = resolve_train_device(config.train_device, config.target).type  # a missing GPU: its own clear error
    world = distributed.init_from_env(device)
    if world.is_main:
        backend = "nccl" if device == "cuda" else "gloo"
        log(f"{world.tag()}distributed run over {world.size} processes ({backend}, training on {device}): scoring "
            f"is sharded by expected cost, recovery is data-parallel (effective batch = batch size x {world.size}); "
            f"{NOT_DISTRIBUTED}")
    return world


def rank_log(world: World, log: Log) -> Log:
    """Log lines prefixed with 'rank r/N: ' in a distributed run; unchanged otherwise."""
    if not world.distributed:
        return log
    return lambda message: log(world.tag() + message)


def rank_progress(world: World, progress: ProgressFactory) -> ProgressFactory:
    """Only rank 0 draws progress bars (N bars on one terminal would overwrite each other)."""
    return progress if world.is_main else silent

