"""Pure functions that turn raw timings into statistics (unit-tested without hardware)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TimingStats:
    """A latency (or a latency saving) summarised over measurement rounds, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    spread_ms: float  # interquartile range of the per-round values
    rounds: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TimingStats":
        return cls(**{k: data[k] for k in ("median_ms", "p10_ms", "p90_ms", "spread_ms", "rounds")})


def summarize(values_ms: list[float] | np.ndarray) -> TimingStats:
    values = np.asarray(values_ms, dtype=float)
    if values.size == 0:
        raise ValueError("no timings to summarise")
    q10, q25, q50, q75, q90 = np.percentile(values, [10, 25, 50, 75, 90])
    return TimingStats(float(q50), float(q10), float(q90), float(q75 - q25), int(values.size))


def paired_differences(reference_ms: list[float], variant_ms: list[float]) -> list[float]:
    """Per-round reference minus variant: drift that hits a whole round cancels out."""
    n = min(len(reference_ms), len(variant_ms))
    return [reference_ms[i] - variant_ms[i] for i in range(n)]


def median_standard_error(values_ms: list[float]) -> float:
    """Standard error of the median, estimated robustly from the interquartile range."""
    values = np.asarray(values_ms, dtype=float)
    if values.size < 2:
        return float("inf")
    q25, q75 = np.percentile(values, [25, 75])
    return float(1.2533 * (q75 - q25) / 1.349 / np.sqrt(values.size))


def median_is_stable(values_ms: list[float], tolerance: float, min_rounds: int) -> bool:
    """True when the median is settled: it moved < tolerance when the newest quarter of rounds came in,
    and its standard error is below half the tolerance."""
    if len(values_ms) < min_rounds:
        return False
    older = values_ms[: max(1, len(values_ms) * 3 // 4)]
    full, early = float(np.median(values_ms)), float(np.median(older))
    settled = abs(full - early) <= tolerance * abs(full)
    return settled and median_standard_error(values_ms) <= 0.5 * tolerance * abs(full)


def ratios_are_settled(reference_ms: list[float], variant_ms: list[float], tolerance: float, min_rounds: int) -> bool:
    """True when the paired per-round ratio variant/reference is settled: its median moved < tolerance when
    the newest quarter of rounds came in, and its standard error is below half the tolerance.

    What a table and an end-to-end check use is this ratio (a saving is one minus it, in units of the
    reference), and drift that slows a whole round cancels in it, so it settles long before each variant's
    own median does on a noisy machine. `tolerance` is absolute, in units of the reference's latency.
    """
    n = min(len(reference_ms), len(variant_ms))
    if n < min_rounds:
        return False
    ratios = [variant_ms[i] / reference_ms[i] for i in range(n)]
    older = ratios[: max(1, n * 3 // 4)]
    settled = abs(float(np.median(ratios)) - float(np.median(older))) <= tolerance
    return settled and median_standard_error(ratios) <= 0.5 * tolerance
