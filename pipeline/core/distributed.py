"""Ranks of a `torchrun` launch: who am I, wait for rank 0, share small objects, average gradients.

A plain process (no torchrun variables, or a world of one) is `SINGLE`: every helper is then a no-op
that calls straight through, so single-process code paths stay exactly as they were. Under torchrun the
process group is gloo when training on the CPU and NCCL on CUDA (one GPU per rank: rank -> LOCAL_RANK).

Failures stay one line: a collective that breaks because another rank died (or stopped answering within
the timeout) raises `PeerLost`; a stage rank 0 runs alone (`on_main`) that fails on rank 0 makes the other
ranks raise `MainStopped`, which the CLI exits on without printing (rank 0 already said why).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
import signal
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar, cast

import torch

from pipeline.core.errors import PipelineError, RunFailure, UsageError

T = TypeVar("T")
TIMEOUT_ENV = "PRACTISE_DISTRIBUTED_TIMEOUT_S"  # how long a rank waits for the others (rank 0 profiling, exporting)
DEFAULT_TIMEOUT_S = 3 * 3600
RESUMABLE = "the run folder keeps every finished stage and scored block: rerun the same command, with any number " \
            "of processes, to resume"


class PeerLost(RunFailure):
    """Another rank died or stopped answering: the run stops, the folder stays resumable."""

    quiet_on_followers = True  # rank 0 says it; the others exit without repeating it


class MainStopped(PipelineError):
    """Rank 0 failed in a stage it runs alone and printed why; this rank exits with its code, silently."""

    quiet = True

    def __init__(self, exit_code: int):
        super().__init__(f"rank 0 stopped (exit code {exit_code})")
        self.exit_code = exit_code


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def tag(self) -> str:
        """'rank 1/2: ' in a distributed run, '' otherwise (prefix for log lines and errors)."""
        return f"rank {self.rank}/{self.size}: " if self.distributed else ""

    def seed(self, seed: int) -> int:
        """A per-rank seed: rank 0 keeps `seed` (so it draws what a single process draws), others differ."""
        return seed if self.rank == 0 else derived_seed(seed, f"rank{self.rank}")

    # -- collectives (no-ops in a world of one) ----------------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            _guarded(torch.distributed.barrier)

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (small picklable objects: JSON-able records, file bytes)."""
        if not self.distributed:
            return obj
        box: list[Any] = [obj if self.is_main else None]  # the other ranks' None is replaced by rank 0's obj
        _guarded(torch.distributed.broadcast_object_list, box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        _guarded(torch.distributed.all_gather_object, out, obj)
        return out

    def main_only(self, fn: Callable[[], T], waiting_for: str, log: Callable[[str], None] | None = None) -> T | None:
        """Run `fn` on rank 0 only while the others wait: rank 0 gets its value, the others None; a failure
        on rank 0 stops the others with `MainStopped` (rank 0 reports it)."""
        if not self.distributed:
            return fn()
        if not self.is_main:
            if log is not None:
                log(f"waiting for rank 0: {waiting_for}")
            status, code = cast("tuple[str, int]", self.broadcast(None))  # rank 0's ("ok" | "failed", exit code)
            if status == "failed":
                raise MainStopped(code)
            return None
        try:
            value = fn()
        except BaseException as exc:
            code = exc.exit_code if isinstance(exc, PipelineError) else 1
            with contextlib.suppress(PipelineError):
                self.broadcast(("failed", code))
            raise
        self.broadcast(("ok", 0))
        return value

    def on_main(self, fn: Callable[[], T], waiting_for: str, log: Callable[[str], None] | None = None) -> T:
        """`main_only`, and every rank gets rank 0's result (small and picklable)."""
        # rank 0's value, a T: only the other ranks get None from main_only, and the broadcast replaces it
        return cast(T, self.broadcast(self.main_only(fn, waiting_for, log)))


SINGLE = World()
_current = SINGLE


def current() -> World:
    """The world this process belongs to (SINGLE unless `init_from_env` started a distributed one)."""
    return _current


def launched_by_torchrun() -> bool:
    """torchrun (or any launcher using its variables) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ and "MASTER_ADDR" in os.environ


def init_from_env(device_type: str) -> World:
    """Join the process group torchrun describes (gloo on the CPU, NCCL on CUDA); SINGLE when not launched so."""
    global _current
    if _current.distributed or not launched_by_torchrun():
        return _current
    world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    backend = "gloo"
    if device_type == "cuda":
        count = torch.cuda.device_count()
        if world.local_rank >= count:
            raise UsageError(f"rank {world.rank} is local rank {world.local_rank}, but this machine has {count} GPU(s); "
                             f"start at most {count} processes per machine (--nproc_per_node {count}).")
        torch.cuda.set_device(world.local_rank)  # --train-device cuda trains on this rank's own GPU
        backend = "nccl"
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    _guarded(torch.distributed.init_process_group, backend=backend, timeout=timeout)
    signal.signal(signal.SIGTERM, _stopped_by_launcher)
    _current = world
    return world


def _stopped_by_launcher(signum, frame) -> None:
    """torchrun stops the other ranks with SIGTERM when one fails: one line (on rank 0), not a silent death."""
    raise PeerLost(f"stopped by the launcher (signal {signum}), because another rank failed; {RESUMABLE}")


def shutdown() -> None:
    """Leave the process group (end of a distributed run)."""
    global _current
    if _current.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _current = SINGLE


def derived_seed(seed: int, name: str) -> int:
    """A seed for one named piece of work (a candidate, a rank), the same in every process and order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def _guarded(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call a torch.distributed function; a broken or silent peer becomes one `PeerLost` line."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:  # DistBackendError, DistNetworkError and gloo's "Connection closed by peer"
        cause = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).splitlines() or [""])[0]).split(". ")[0][:120]
        raise PeerLost(f"lost contact with another rank, which died or did not answer within "
                       f"{os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)} s ({cause}); {RESUMABLE}") from exc


@contextlib.contextmanager
def averaged_gradients(world: World, buffers_of: torch.nn.Module | None = None) -> Iterator[None]:
    """Inside the block, every optimizer step over `nn.Parameter`s first averages their gradients over the ranks.

    This is what DistributedDataParallel does (mean of the ranks' gradients, one all-reduce per step), done
    as an optimizer step hook because recovery's trained parameters (adaptors spliced in by hooks) never
    pass through a wrapped module's forward. Optimizers over plain tensors (synthetic images, optimised
    per rank) are left alone. With `buffers_of`, its buffers (BatchNorm running statistics in training
    mode) are broadcast from rank 0 before each step, as DDP's broadcast_buffers does.
    """
    if not world.distributed:
        yield
        return

    def average(optimizer, args, kwargs) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not params or not all(isinstance(p, torch.nn.Parameter) for p in params):
            return
        params = [p for p in params if p.grad is not None]  # the same on every rank: they run the same graph
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        _guarded(torch.distributed.all_reduce, flat)
        flat /= world.size
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        if buffers_of is not None:
            for buffer in buffers_of.buffers():
                _guarded(torch.distributed.broadcast, buffer, src=0)

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(average)
    try:
        yield
    finally:
        handle.remove()


def balanced_shards(costs: dict[str, float], size: int) -> list[list[str]]:
    """Split named pieces of work over `size` ranks so their summed costs are close (longest first, to the
    least loaded rank); each shard keeps the pieces' given order. The same on every rank for the same input."""
    shards: list[list[str]] = [[] for _ in range(size)]
    loads = [0.0] * size
    for name in sorted(costs, key=lambda n: -costs[n]):  # stable: equal costs keep their order
        lightest = min(range(size), key=lambda r: (loads[r], r))
        shards[lightest].append(name)
        loads[lightest] += costs[name]
    order = {name: i for i, name in enumerate(costs)}
    return [sorted(shard, key=order.__getitem__) for shard in shards]
