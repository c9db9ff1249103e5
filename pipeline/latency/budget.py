"""Latency budgets: a ratio of the original latency (0.78, 78%) or an absolute time (12ms)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.core.errors import UsageError


@dataclass(frozen=True)
class Budget:
    ratio: float | None = None
    absolute_ms: float | None = None

    @classmethod
    def parse(cls, text: str | float) -> "Budget":
        raw = str(text).strip().lower()
        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|%)?", raw)
        if not match:
            raise UsageError(
                f"latency budget '{text}' is not understood; give a ratio of the original latency in (0, 1] "
                "such as 0.78, a percentage such as 78%, or a time such as 12ms."
            )
        value, unit = float(match.group(1)), match.group(2)
        if unit == "ms":
            if value <= 0:
                raise UsageError(f"latency budget {text} must be a positive time.")
            return cls(absolute_ms=value)
        ratio = value / 100 if unit == "%" else value
        if not 0 < ratio <= 1:
            raise UsageError(
                f"latency budget {text} is outside (0, 1]: it is the fraction of the original latency to keep "
                "(0.78 keeps 78%)."
            )
        return cls(ratio=ratio)

    def target_ms(self, full_ms: float) -> float:
        if self.absolute_ms is not None:
            return self.absolute_ms
        assert self.ratio is not None, "a Budget holds a ratio or a time"
        return self.ratio * full_ms

    def target_ratio(self, full_ms: float) -> float:
        return self.target_ms(full_ms) / full_ms

    def describe(self) -> str:
        return f"{self.absolute_ms:g} ms" if self.absolute_ms is not None else f"{self.ratio:g} of the original latency"


# a measured ratio this close to the target cannot be told from it: the profiler's stop rule pins a ratio to a
# standard error of half its 0.02 tolerance, and ratios of the same files moved by several percent between sittings
WITHIN_NOISE = 0.01
