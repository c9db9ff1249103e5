"""Selecting blocks until the network, measured end to end, meets the budget.

The latency table predicts; the end-to-end measurement decides. A miss asks the table for more saving;
a result far under the budget (the table overstated what was left) asks for less. Once one request has
missed and another has met with much to spare, the next asks for the saving halfway between them (a
bisection on the measured network), so a table that understates one step and overstates the next does not
leave the run with blocks it did not need. The kept selection is the measured one closest to the budget that
meets it. `pipeline run`
and the Fashion-MNIST benchmark both choose this way.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, quiet_log
from pipeline.latency.budget import Budget
from pipeline.latency.profiling import EndToEnd
from pipeline.latency.selection import Selection

# a measured latency this far under the budget (fraction of the original) is worth trying fewer blocks for
UNDERSHOOT_TO_RETRY = 0.03

Select = Callable[[float], Selection]  # extra saving (ms) asked of the table -> a selection
Measure = Callable[[list[str]], EndToEnd]  # dropped blocks -> the original and that network, side by side


def select_by_measurement(select: Select, measure: Measure | None, budget: Budget, full_ms: float,
                          max_attempts: int, log: Log = quiet_log) -> tuple[list[dict], int]:
    """Every attempt (prediction, measurement, whether it meets the budget) and the index of the one to keep.

    `measure` None: the table is of another device, so the first selection is kept unmeasured.
    `full_ms` is the table's original latency: the ratio budget's misses are converted with it.
    """
    extra_ms = 0.0
    attempts: list[dict] = []
    missed_at: float | None = None  # the largest extra saving asked whose network missed the budget
    spare_at: float | None = None  # the smallest one whose network met it with much to spare
    for attempt in range(max_attempts):
        try:
            selection = select(extra_ms)
        except UsageError:
            if not attempts:
                raise
            log("no further block can be dropped; keeping the measured selections")
            break
        if attempts and (not selection.dropped or any(set(a["dropped"]) == set(selection.dropped) for a in attempts)):
            log("no other selection covers the difference; keeping the measured ones")
            break
        record = {"attempt": attempt + 1, "dropped": selection.dropped, "predicted_ms": selection.predicted_ms,
                  "predicted_ratio": selection.predicted_ratio}
        attempts.append(record)
        if measure is None:
            record["measured"] = None
            log("the latency table's device is not this one: the chosen network is not measured here")
            break
        log(f"measuring the original and the network without {len(selection.dropped)} blocks end to end")
        e2e = measure(selection.dropped)
        record["measured"] = e2e.to_dict()
        if budget.absolute_ms is not None:
            miss_ms = e2e.compressed.median_ms - budget.absolute_ms
        else:
            assert budget.ratio is not None, "a Budget holds a ratio or a time"
            miss_ms = (e2e.ratio_median - budget.ratio) * full_ms
        record["meets_budget"] = miss_ms <= 0
        # the selection's predicted distance from the budget, plus the measured miss (or surplus): adding the
        # miss to the budget alone changes nothing when the prediction already overshot it
        overshoot_ms = budget.target_ms(full_ms) - selection.predicted_ms
        if miss_ms > 0:
            missed_at = extra_ms if missed_at is None else max(missed_at, extra_ms)
            log(f"measured latency misses the budget by {miss_ms:.3f} ms; selecting more blocks")
            extra_ms = (max(extra_ms, overshoot_ms) + miss_ms if spare_at is None
                        else _between(missed_at, spare_at))
        elif -miss_ms > UNDERSHOOT_TO_RETRY * full_ms:
            spare_at = extra_ms if spare_at is None else min(spare_at, extra_ms)
            log(f"measured latency is {-miss_ms:.3f} ms under the budget (the table overstated what was left); "
                "trying fewer blocks")
            extra_ms = overshoot_ms + miss_ms if missed_at is None else _between(missed_at, spare_at)
        else:
            break
    return attempts, closest_meeting(attempts)


def _between(missed_at: float, spare_at: float) -> float:
    """The extra saving halfway between a request that missed and one that met with much to spare."""
    return (missed_at + spare_at) / 2


def closest_meeting(attempts: list[dict]) -> int:
    """Index of the measured attempt that meets the budget with the most latency left, else the last one."""
    meeting = [i for i, a in enumerate(attempts) if a.get("meets_budget")]
    if not meeting:
        return len(attempts) - 1
    return max(meeting, key=lambda i: attempts[i]["measured"]["ratio_median"])
