"""Plans: precision and depth chosen together under the budget, each measured in its deployed form.

For each kept precision, PRACTISE's selection of blocks that meets the budget under that precision's own
latency table (zero blocks when the precision alone meets it), corrected by end-to-end measurement. Every
latency ratio is against the FP32 original, so the plans are compared on one scale; a precision's table is
read in its own frame (its original's latency) through the precision's measured ratio to FP32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, quiet_log
from pipeline.latency.budget import Budget
from pipeline.latency.measured_selection import select_by_measurement
from pipeline.latency.precision import PrecisionOption
from pipeline.latency.profiling import EndToEnd
from pipeline.latency.selection import score_blocks, select_blocks
from profilers import LatencyTable


@dataclass
class Plan:
    precision: str
    dropped: list[str]
    predicted_ratio: float  # against the FP32 original
    measured_ratio: float | None = None  # against the FP32 original, end to end in the deployed form
    meets_budget: bool | None = None
    agreement: float | None = None  # unrecovered, in its precision, on the selection split
    kl: float | None = None
    attempts: list[dict] = field(default_factory=list)
    note: str = ""
    resolution: int | None = None  # the input size, when smaller than the model's own (--min-resolution)

    @property
    def name(self) -> str:
        blocks = "no block dropped" if not self.dropped else f"{len(self.dropped)} blocks dropped"
        return f"{self.precision}{size_words(self.resolution)}, {blocks}"

    def to_dict(self) -> dict:
        return asdict(self) | {"name": self.name}

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        return cls(**{k: v for k, v in data.items() if k != "name"})


def size_words(resolution: int | None) -> str:
    """" at 160 px" for a plan at a smaller input size, "" at the model's own."""
    return "" if resolution is None else f" at {resolution} px"


# measures a plan's network (precision, dropped blocks) against the FP32 original, end to end
MeasurePlan = Callable[[str, list[str]], EndToEnd]


def budget_in_frame(budget: Budget, option: PrecisionOption) -> Budget:
    """The budget as a ratio of the precision's own original (absolute budgets are the same milliseconds)."""
    if budget.absolute_ms is not None:
        return budget
    return Budget(ratio=min(1.0, budget.target_ratio(1.0) / option.latency_ratio))


def precision_only_plan(option: PrecisionOption, budget: Budget, fp32_full_ms: float) -> Plan:
    """The original in this precision: its ratio was already measured beside FP32 by the survey."""
    meets = option.latency_ratio <= budget.target_ratio(fp32_full_ms)
    where = "" if option.resolution is None else f", fed {option.resolution} px images"
    return Plan(option.precision, [], option.latency_ratio, option.latency_ratio, meets, option.agreement, option.kl,
                note=f"the original network in this precision{where} (measured by the precision survey)",
                resolution=option.resolution)


def depth_plan(option: PrecisionOption, table: LatencyTable, recoverability: dict[str, float], budget: Budget,
               selector: str, measure: MeasurePlan | None, max_attempts: int, log: Log = quiet_log) -> Plan:
    """PRACTISE's selection in this precision's table, corrected by measuring it end to end."""
    frame = budget_in_frame(budget, option)
    scores = score_blocks(recoverability, table)

    def select(extra_ms: float):
        return select_blocks(scores, table, frame, selector, extra_ms)

    def measure_in_frame(dropped: list[str]) -> EndToEnd:
        e2e = measure(option.precision, dropped)  # type: ignore[misc]
        return replace(e2e, ratio_median=e2e.ratio_median / option.latency_ratio)

    attempts, chosen = select_by_measurement(select, measure_in_frame if measure else None, frame,
                                             table.full.median_ms, max_attempts, log)
    for attempt in attempts:
        attempt["predicted_ratio_vs_fp32"] = attempt["predicted_ratio"] * option.latency_ratio
        if attempt.get("measured"):
            attempt["measured_ratio_vs_fp32"] = attempt["measured"]["ratio_median"] * option.latency_ratio
    best = attempts[chosen]
    return Plan(option.precision, best["dropped"], best["predicted_ratio_vs_fp32"],
                best.get("measured_ratio_vs_fp32"), best.get("meets_budget"), attempts=attempts)


def lossless_precision_plan(options: list[PrecisionOption], budget: Budget, fp32_full_ms: float,
                            clear_ratio: float | None) -> Plan | None:
    """A precision-only plan that meets the budget beyond the measurement's doubt and changes no prediction on the
    selection split (the one closest to the original, lowest KL, when several), or None. Dropping blocks can at best
    tie it on agreement, so scoring, depth plans and recovery would cost minutes to lose or tie (the cheap lever
    settles the plan)."""
    found = []
    for option in options[1:]:
        plan = precision_only_plan(option, budget, fp32_full_ms)
        clear = clear_ratio is None or option.latency_ratio <= clear_ratio
        if option.kept and plan.meets_budget and clear and option.agreement >= 1.0:
            found.append(plan)
    return min(found, key=lambda p: (p.kl or 0.0, p.measured_ratio or p.predicted_ratio)) if found else None


def _clearly_meets(option: PrecisionOption, budget: Budget, fp32_full_ms: float, clear_ratio: float | None) -> bool:
    """The precision alone meets the budget, by more than the measurement's precision when that is known."""
    plan = precision_only_plan(option, budget, fp32_full_ms)
    return bool(plan.meets_budget) and (clear_ratio is None or option.latency_ratio <= clear_ratio)


def needing_blocks(options: list[PrecisionOption], budget: Budget, base: LatencyTable,
                   clear_ratio: float | None = None) -> list[str]:
    """The kept precisions that do not clearly meet the budget alone, so need a table of their own block savings."""
    return [o.precision for o in options
            if o.kept and (o.precision == options[0].precision
                           or not _clearly_meets(o, budget, base.full.median_ms, clear_ratio))]


def build_plans(options: list[PrecisionOption], tables: dict[str, LatencyTable], recoverability: dict[str, float],
                budget: Budget, selector: str, measure: MeasurePlan | None, max_attempts: int,
                log: Log = quiet_log, clear_ratio: float | None = None) -> list[Plan]:
    """One plan per kept precision; a precision whose table cannot reach the budget gets none (logged). A precision
    that meets the budget alone gets that plan, and also a depth plan when it meets it only within the measurement's
    precision (`clear_ratio`), since `choose` prefers plans clearly under the budget."""
    fp32_full_ms = tables[options[0].precision].full.median_ms  # the first option is the base precision
    plans = []
    for option in (o for o in options if o.kept):
        only = precision_only_plan(option, budget, fp32_full_ms)
        if option.precision != options[0].precision and only.meets_budget:
            plans.append(only)
            if _clearly_meets(option, budget, fp32_full_ms, clear_ratio):
                continue
            log(f"plan in {option.precision}: it meets the budget alone only within the measurement's precision "
                f"(measured {option.latency_ratio:.3f}); a plan that also drops blocks to get under {clear_ratio:.3f} "
                "is made beside it")
        if option.precision not in tables:
            log(f"no plan in {option.precision}: it has no latency table (its device is not measurable here)")
            continue
        aim = budget if not only.meets_budget or clear_ratio is None else Budget(ratio=clear_ratio)
        try:
            log(f"plan in {option.precision}: selecting blocks under its latency table")
            plans.append(depth_plan(option, tables[option.precision], recoverability, aim, selector, measure,
                                    max_attempts, log))
        except UsageError as exc:
            log(f"no plan in {option.precision}: {exc}")
    return plans


def choose(plans: list[Plan], clear_ratio: float | None = None) -> tuple[Plan | None, Plan | None, str]:
    """(the depth plan to recover, the best precision-only plan, why): each the most faithful that meets the
    budget (agreement, then lower KL); when no depth plan meets it, the one closest to it.

    With `clear_ratio` (the target less the measurement's precision), plans measured under it come first: a plan
    that meets the budget only within what its measurement can tell apart misses it about half the times its file
    is timed again (seen: a plan measured at 0.777 against 0.78, its file timed at 0.783 after recovery)."""
    def faithful(plan: Plan):
        return (plan.agreement if plan.agreement is not None else -1.0, -(plan.kl or 0.0))

    meeting = [p for p in plans if p.meets_budget is not False]
    depth, narrow_depth = _clear_first([p for p in meeting if p.dropped], clear_ratio)
    only, narrow_only = _clear_first([p for p in meeting if not p.dropped], clear_ratio)
    # the original in a precision: KL first (16 selection images move agreement in 6% steps), as the survey ranks them
    best_only = max(only, key=lambda p: (-(p.kl or 0.0), p.agreement or 0.0)) if only else None
    if depth:
        chosen = max(depth, key=faithful)
        why = (f"{chosen.name} agrees most with the original on the selection split before recovery "
               f"({_percent(chosen.agreement)}) among the {len(depth)} plan(s) with dropped blocks that meet the budget")
    elif best_only is not None:  # recovering a plan that misses the budget could only ship something that misses
        chosen = None
        why = ("no plan with dropped blocks meets the budget" if any(p.dropped for p in plans)
               else "no block needs dropping")
    else:
        missing = [p for p in plans if p.dropped]
        chosen = min(missing, key=lambda p: p.measured_ratio or p.predicted_ratio) if missing else None
        why = ("no plan with dropped blocks meets the budget; the closest is recovered" if chosen
               else "no block needs dropping")
    narrow = narrow_depth + narrow_only
    if narrow:
        why += (f"; passed over as too close to the budget to be sure (measured above {clear_ratio:.3f}, the target "
                "less the measurements' precision), since other plans are clearly under it: "
                + ", ".join(f"{p.name} (measured {p.measured_ratio:.3f})" for p in narrow))
    if best_only is not None:
        why += (f"; {best_only.name} meets the budget alone ({_percent(best_only.agreement)} agreement) and is "
                "offered to the report images beside the recovered network")
    return chosen, best_only, why


def _clear_first(plans: list[Plan], clear_ratio: float | None) -> tuple[list[Plan], list[Plan]]:
    """(the plans to choose among, those passed over): the ones measured under `clear_ratio` when there are any."""
    if clear_ratio is None:
        return plans, []
    clear = [p for p in plans if p.measured_ratio is None or p.measured_ratio <= clear_ratio]
    return (clear, [p for p in plans if p not in clear]) if clear else (plans, [])


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def most_aggressive_plan(options: list[PrecisionOption], tables: dict[str, LatencyTable], budget: Budget,
                         measure: MeasurePlan | None) -> Plan | None:
    """Every block that saves time dropped, in the fastest kept precision, measured end to end.

    Tables add single-block savings; with many blocks dropped the network can be faster than they predict
    (Lite0 with all 9 dropped: 0.597 predicted, 0.509 measured here), so a budget is refused as unreachable
    only after this plan was measured. None when nothing can be measured here.
    """
    kept = [o for o in options if o.kept]
    if measure is None or not kept:
        return None
    fastest = min(kept, key=lambda o: o.latency_ratio)
    table = tables[fastest.precision]
    dropped = [b for b, s in table.savings.items() if s.median_ms > 0]
    e2e = measure(fastest.precision, dropped)
    ratio = e2e.ratio_median
    meets = (e2e.compressed.median_ms <= budget.absolute_ms if budget.absolute_ms is not None
             else ratio <= budget.target_ratio(1.0))
    return Plan(fastest.precision, dropped, fastest.latency_ratio * table.predicted_ratio(dropped), ratio, meets,
                attempts=[{"attempt": 1, "dropped": dropped, "measured": e2e.to_dict(), "meets_budget": meets,
                           "predicted_ms": table.predicted_ms(dropped), "predicted_ratio": table.predicted_ratio(dropped),
                           "predicted_ratio_vs_fp32": fastest.latency_ratio * table.predicted_ratio(dropped),
                           "measured_ratio_vs_fp32": ratio}],
                note="every block that saves time, in the fastest precision: the table predicted the budget unreachable")
