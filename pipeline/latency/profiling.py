"""Build, reuse or import the latency table of a network, and measure networks end to end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from pipeline.core.clock import now_iso
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.models import LoadedModel
from pipeline.network.blocks import NetworkStructure
from pipeline.network.surgery import drop_blocks
from profilers import LatencyTable, Profiler, TableStore
from profilers.fingerprint import DeviceFingerprint
from profilers.load import busy_machine_warning
from profilers.stats import TimingStats, paired_differences, summarize

FULL = "__full__"


def profile_candidates(loaded: LoadedModel, structure: NetworkStructure, profiler: Profiler,
                       progress: ProgressFactory = silent) -> LatencyTable:
    """Measure the full network and each single-block drop as whole networks (runtimes fuse layers)."""
    variants: dict[str, nn.Module] = {FULL: loaded.module}
    for block in structure.candidate_names():
        variants[block] = drop_blocks(loaded.module, [block])
    fingerprint = profiler.fingerprint()
    measurement = profiler.measure(variants, progress, reference=FULL)
    full_rounds = measurement.rounds_ms[FULL]
    savings = {
        block: summarize(paired_differences(full_rounds, measurement.rounds_ms[block]))
        for block in structure.candidate_names()
    }
    method = profiler.settings.method() | {
        "stop_reason": measurement.stop_reason,
        "elapsed_s": round(measurement.elapsed_s, 2),
        "saving": "full network minus network without the block, per round (paired)",
    }
    return LatencyTable(loaded.spec, loaded.architecture_hash(), fingerprint, summarize(full_rounds), savings,
                        method, now_iso())


def profile_whole_network(loaded: LoadedModel, profiler: Profiler, progress: ProgressFactory = silent) -> LatencyTable:
    """The full network alone, as a table without savings: what a run needs before it knows whether any plan drops
    blocks (the budget's scale in milliseconds); the per-block savings are measured once one does."""
    measurement = profiler.measure({FULL: loaded.module}, progress)
    method = profiler.settings.method() | {"stop_reason": measurement.stop_reason,
                                           "elapsed_s": round(measurement.elapsed_s, 2),
                                           "saving": "not measured yet: the whole network only"}
    return LatencyTable(loaded.spec, loaded.architecture_hash(), profiler.fingerprint(),
                        summarize(measurement.rounds_ms[FULL]), {}, method, now_iso())


@dataclass
class TableChoice:
    table: LatencyTable
    source: str  # "measured" | "store" | "file"
    path: Path | None


def obtain_table(loaded: LoadedModel, structure: NetworkStructure, profiler: Profiler, store: TableStore,
                 table_file: Path | None = None, reprofile: bool = False,
                 progress: ProgressFactory = silent, log: Log = quiet_log, blocks: bool = True) -> TableChoice:
    """Reuse the stored table for this device and settings, import a given one, or measure a new one (with
    `blocks=False`, when none is stored, the whole network only: nothing is stored).

    The profiler must be active (inside its `with` block).
    """
    candidates = structure.candidate_names()
    if table_file is not None:
        table = LatencyTable.read(table_file)
        table.check_usable(loaded.architecture_hash(), None, candidates)
        log(f"using latency table {table_file} measured on [{table.fingerprint.describe()}]")
        return TableChoice(table, "file", Path(table_file))
    fingerprint = profiler.fingerprint()
    path = store.path_for(loaded.spec, loaded.architecture_hash(), fingerprint)
    if not reprofile:
        stored = store.find(loaded.spec, loaded.architecture_hash(), fingerprint, log)
        if stored is not None:
            stored.check_usable(loaded.architecture_hash(), fingerprint, candidates)
            log(f"reusing latency table {path}")
            return TableChoice(stored, "store", path)
    if not blocks:
        log(f"profiling the whole network on [{fingerprint.describe()}]; each block's saving is measured only if a "
            "plan needs dropped blocks")
        return TableChoice(profile_whole_network(loaded, profiler, progress), "measured", None)
    log(f"profiling {len(candidates) + 1} network variants on [{fingerprint.describe()}]")
    _warn_if_busy(fingerprint, log)
    table = profile_candidates(loaded, structure, profiler, progress)
    return TableChoice(table, "measured", store.save(table))


def _warn_if_busy(fingerprint: DeviceFingerprint, log: Log) -> None:
    """Say so when other processes compete for the cores a CPU measurement needs (it still goes on)."""
    if fingerprint.device_kind != "cpu":
        return
    warning = busy_machine_warning(fingerprint.threads)
    if warning:
        log(warning)


@dataclass
class EndToEnd:
    """The original and a compressed network measured side by side in the same rounds."""

    original: TimingStats
    compressed: TimingStats
    ratio_median: float  # median of per-round compressed/original ratios
    stop_reason: str

    def to_dict(self) -> dict:
        return {
            "original": self.original.to_dict(),
            "compressed": self.compressed.to_dict(),
            "ratio_median": self.ratio_median,
            "stop_reason": self.stop_reason,
        }


@dataclass
class Rounds:
    """Several variants measured in the same interleaved rounds."""

    rounds_ms: dict[str, list[float]]
    stop_reason: str

    def median_ms(self, name: str) -> float:
        return float(np.median(self.rounds_ms[name]))

    def ratio(self, name: str, reference: str) -> float:
        """Median of the per-round ratios of `name` to `reference` (drift hits both alike)."""
        a, b = self.rounds_ms[reference], self.rounds_ms[name]
        return float(np.median([b[i] / a[i] for i in range(min(len(a), len(b)))]))


def measure_variants(variants: dict, profiler: Profiler, progress: ProgressFactory = silent,
                     reference: str | None = None) -> Rounds:
    """Interleave any number of variants (modules or files) on the active profiler; with a `reference`, stop
    once every ratio to it is settled."""
    measurement = profiler.measure(variants, progress, reference=reference)
    return Rounds(measurement.rounds_ms, measurement.stop_reason)


def measure_end_to_end(original, compressed, profiler: Profiler, progress: ProgressFactory = silent) -> EndToEnd:
    """Interleave the two (modules or exported files) on the active profiler; report the paired ratio."""
    measurement = profiler.measure({"original": original, "compressed": compressed}, progress, reference="original")
    a, b = measurement.rounds_ms["original"], measurement.rounds_ms["compressed"]
    ratios = [b[i] / a[i] for i in range(min(len(a), len(b)))]
    return EndToEnd(summarize(a), summarize(b), float(np.median(ratios)), measurement.stop_reason)


def validate_table(loaded: LoadedModel, structure: NetworkStructure, table: LatencyTable, profiler: Profiler,
                   count: int, seed: int = 0, progress: ProgressFactory = silent) -> dict:
    """Measure `count` random multi-block drops end to end and compare them with the table's prediction."""
    import random

    names = structure.candidate_names()
    rng = random.Random(seed)
    smallest = 2 if len(names) >= 2 else 1
    subsets = [sorted(rng.sample(names, rng.randint(smallest, len(names)))) for _ in range(count)]
    variants: dict[str, nn.Module] = {FULL: loaded.module}
    for i, subset in enumerate(subsets):
        variants[f"drop{i}"] = drop_blocks(loaded.module, subset)
    measurement = profiler.measure(variants, progress, seed=seed, reference=FULL)
    full = measurement.rounds_ms[FULL]
    checks: list[dict] = []
    for i, subset in enumerate(subsets):
        rounds = measurement.rounds_ms[f"drop{i}"]
        measured = float(np.median([rounds[j] / full[j] for j in range(min(len(rounds), len(full)))]))
        predicted = table.predicted_ratio(subset)
        checks.append({"dropped": subset, "predicted_ratio": predicted, "measured_ratio": measured,
                       "relative_error": (predicted - measured) / measured,
                       "additive_ratio": table.additive_ratio(subset)})
    errors = [abs(c["relative_error"]) for c in checks]
    return {
        "table_fingerprint": table.fingerprint.to_dict(),
        "latency_model": table.latency_model.kind,  # the model whose prediction "predicted_ratio" is
        "checks": checks,
        "median_abs_relative_error": float(np.median(errors)),
        "worst_abs_relative_error": float(max(errors)),
        "stop_reason": measurement.stop_reason,
    }
