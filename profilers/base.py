"""The profiler protocol shared by every backend.

A backend only says how to turn a network variant into something that runs once (`_load`) and how to
time a burst of runs (`_time_runs`). The base class owns the measurement method, the same for all:
variants are interleaved in shuffled order, round after round; in each round a variant gets a few
warm-up runs and then a chunk of timed runs whose median is the round's value. Rounds continue until
every variant's median is stable within the tolerance or the time cap is hit. Drift (thermal, other
processes) then hits all variants alike, and savings are taken as paired per-round differences.
"""

from __future__ import annotations

import copy
import os
import random
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, silent
from profilers.fingerprint import DeviceFingerprint
from profilers.stats import median_is_stable, ratios_are_settled

Variant = nn.Module | Path  # a PyTorch network, or an exported file the backend can run


@dataclass(frozen=True)
class ProfileSettings:
    batch: int = 1
    resolution: int = 224
    channels: int = 3  # input channels: 3 for RGB networks, 1 for grayscale ones
    threads: int = 0  # 0: all cores of this machine
    precision: str = "fp32"
    # 10 warm-up runs per chunk let the previous session's spinning threads go idle; with 3 the
    # saving spread exceeded the savings (benchmarks/results/profiling_method.md)
    warmup_runs: int = 10
    runs_per_round: int = 20
    min_rounds: int = 10
    max_rounds: int = 60
    tolerance: float = 0.02
    # with a reference variant, also stop once every paired ratio to it is known to this (absolute) precision
    # (median moved less, standard error under half of it): on Lite0 on a quiet Xeon, 0.02 stopped a table at
    # round 15 (the per-median rule at 16), its savings within 0.6% of the full latency of 45 rounds' figures;
    # 0.01 needed 30 rounds for 0.45%. Under drift that slows whole rounds it stops far sooner than the medians
    ratio_tolerance: float = 0.02
    time_cap_s: float = 90.0
    cuda_graphs: bool = False  # torch CUDA: replay each variant as a captured CUDA graph

    def input_shape(self, batch: int | None = None) -> tuple[int, int, int, int]:
        return (self.batch if batch is None else batch, self.channels, self.resolution, self.resolution)

    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    def method(self) -> dict:
        data = asdict(self)
        data["threads"] = self.resolved_threads()
        data["design"] = "interleaved shuffled rounds; per-round median of a chunk; savings as paired per-round differences"
        return data


@dataclass
class Measurement:
    rounds_ms: dict[str, list[float]]  # variant -> per-round median latency
    stop_reason: str
    elapsed_s: float


def _warn(message: str) -> None:
    """The default log: a warning, so that nothing the profiler decides goes unsaid."""
    warnings.warn(message, RuntimeWarning, stacklevel=2)


class Profiler(ABC):
    """Measures whole-network latency of several variants on one device, with one backend."""

    name: str = ""
    target: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    auto_precisions: tuple[str, ...] = ("fp32",)  # what --precision auto plans with on this backend
    reference_precision: str = "fp32"  # under --precision auto, budgets are relative to the original in this
    supports_cuda_graphs: bool = False
    runs_files: bool = False  # times exported files (ONNX, IR) fed their own input shape: what input-size plans need

    def __init__(self, settings: ProfileSettings):
        self.settings = settings
        self.log: Log = _warn  # what the profiler decided on its own (a fallback it took); a run sets its log

    # -- lifecycle: heavy runtime objects live between __enter__ and __exit__ --------------
    def __enter__(self) -> "Profiler":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        """Create runtime resources (sessions, CUDA context)."""

    def deactivate(self) -> None:
        """Release runtime resources."""

    def at_precision(self, precision: str) -> "Profiler":
        """This active profiler in another precision, sharing its runtime resources (used inside its `with`)."""
        if precision not in self.precisions:
            raise UsageError(f"the {self.name} backend measures {', '.join(self.precisions)}, not {precision}.")
        sibling = copy.copy(self)
        sibling.settings = replace(self.settings, precision=precision)
        return sibling

    def prepared(self, variant: Variant) -> Variant:
        """`variant` in the form this profiler runs it, for another profiler to run as it is (a file given
        to a sibling in another precision is not converted again)."""
        return variant

    # -- what each backend provides ---------------------------------------------------------
    @abstractmethod
    def fingerprint(self) -> DeviceFingerprint: ...

    @abstractmethod
    def _load(self, name: str, variant: Variant) -> Callable[[], object]:
        """Prepare `variant` and return a function that runs one inference."""

    def _time_runs(self, run: Callable[[], object], count: int) -> list[float]:
        """Wall-clock milliseconds of each of `count` runs (host-synchronous backends)."""
        times = []
        for _ in range(count):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000.0)
        return times

    # -- the shared method ------------------------------------------------------------------
    def measure(self, variants: Mapping[str, Variant], progress: ProgressFactory = silent, seed: int = 0,
                reference: str | None = None) -> Measurement:
        """Interleaved shuffled rounds until every median is stable, or, given a `reference` variant, every
        paired ratio to it is settled (what tables and end-to-end checks use), or the time cap."""
        s = self.settings
        runners = {}
        with progress(len(variants), f"preparing {len(variants)} variants ({self.name})") as bar:
            for name, variant in variants.items():
                runners[name] = self._load(name, variant)
                bar.update(1)
        rounds: dict[str, list[float]] = {name: [] for name in runners}
        rng = random.Random(seed)
        start = time.monotonic()
        stop_reason = "max_rounds"
        with progress(s.max_rounds, f"timing {len(runners)} variants ({self.name})") as bar:
            for _ in range(s.max_rounds):
                order = list(runners)
                rng.shuffle(order)
                for name in order:
                    run = runners[name]
                    for _ in range(s.warmup_runs):
                        run()
                    rounds[name].append(float(np.median(self._time_runs(run, s.runs_per_round))))
                bar.update(1)
                if all(median_is_stable(v, s.tolerance, s.min_rounds) for v in rounds.values()):
                    stop_reason = "stable"
                    break
                if reference is not None and all(
                        ratios_are_settled(rounds[reference], v, s.ratio_tolerance, s.min_rounds)
                        for name, v in rounds.items() if name != reference):
                    stop_reason = "ratios_settled"
                    break
                if time.monotonic() - start > s.time_cap_s and len(next(iter(rounds.values()))) >= 3:
                    stop_reason = "time_cap"
                    break
        return Measurement(rounds, stop_reason, time.monotonic() - start)
