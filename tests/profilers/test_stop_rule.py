"""The protocol's stop rule: with a reference variant, measuring ends once every paired ratio to it is settled."""

from __future__ import annotations

import itertools

from profilers import ProfileSettings
from profilers.base import Profiler
from profilers.fingerprint import DeviceFingerprint

# a busy machine: whole rounds run slower or faster, by far more than the 2% tolerance of each median
DRIFT = [1.0, 1.6, 0.8, 1.3, 0.9, 1.5, 1.1, 0.7, 1.4, 1.2]


class DriftingClock(Profiler):
    """Variant `name` takes `cost[name]` x the round's drift: ratios are exact, each median never settles."""

    name, target = "drifting", "cpu"

    def __init__(self, settings: ProfileSettings, cost: dict[str, float]):
        super().__init__(settings)
        self.cost, self.calls = cost, itertools.count()

    def fingerprint(self) -> DeviceFingerprint:
        return DeviceFingerprint("stub", "cpu", "", "", "drifting", "0", "fp32", 1, 8, 1, "0", "x86_64")

    def _load(self, name: str, variant: object):
        return lambda: name

    def _time_runs(self, run, count: int) -> list[float]:
        name = run()
        drift = DRIFT[(next(self.calls) // len(self.cost)) % len(DRIFT)]
        return [self.cost[name] * drift] * count


SETTINGS = ProfileSettings(warmup_runs=0, runs_per_round=1, min_rounds=10, max_rounds=40, time_cap_s=60)


def test_paired_ratios_stop_the_rounds_where_drifting_medians_would_not():
    cost = {"full": 4.0, "drop_a": 3.8, "drop_b": 3.0}
    with_reference = DriftingClock(SETTINGS, cost).measure(dict.fromkeys(cost), reference="full")
    assert with_reference.stop_reason == "ratios_settled"
    assert len(with_reference.rounds_ms["full"]) == SETTINGS.min_rounds
    without = DriftingClock(SETTINGS, cost).measure(dict.fromkeys(cost))
    assert without.stop_reason == "max_rounds" and len(without.rounds_ms["full"]) == SETTINGS.max_rounds
