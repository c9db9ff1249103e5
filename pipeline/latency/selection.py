"""Choose which blocks to drop so that the predicted latency meets the budget.

PRACTISE scores a block by recoverability / latency saved (in percent) and drops the best-scored ones.
Under a budget that becomes greedy: take blocks in score order until the predicted saving covers what
the budget requires. `knapsack` instead solves the covering problem exactly: minimise the summed
recoverability subject to the summed saving covering the requirement. Predicted savings come from the
table's latency model: summed single-block savings, or, when the table carries one fitted on measured
multi-block drops, those plus the learned interactions (the knapsack's cover is then adjusted to that model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from pipeline.core.errors import UsageError
from pipeline.latency.budget import Budget
from profilers import LatencyTable

SELECTORS = ("greedy", "knapsack")
_KNAPSACK_UNITS = 4000  # resolution of the saving axis: 1/4000 of the full latency


@dataclass
class BlockScore:
    block: str
    recoverability: float  # feature MSE after the adaptor fit; lower recovers better
    saving_ms: float
    saving_percent: float
    score: float  # recoverability / saving_percent; lower is better, inf when nothing is saved

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BlockScore":
        return cls(**data)


@dataclass
class Selection:
    dropped: list[str]
    predicted_ms: float
    predicted_ratio: float
    target_ms: float
    selector: str
    extra_saving_ms: float = 0.0  # added after an end-to-end measurement missed the budget
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def score_blocks(recoverability: dict[str, float], table: LatencyTable) -> list[BlockScore]:
    scores = []
    for block, recov in recoverability.items():
        saving = table.savings[block].median_ms
        percent = 100.0 * saving / table.full.median_ms
        score = recov / percent if percent > 0 else math.inf
        scores.append(BlockScore(block, recov, saving, percent, score))
    return sorted(scores, key=lambda s: (s.score, s.block))


def best_reachable_ratio(table: LatencyTable) -> float:
    positive = [b for b, s in table.savings.items() if s.median_ms > 0]
    return table.predicted_ratio(positive)


def smallest_budget_text(reachable: float) -> str:
    """The reachable ratio rounded up to a budget one can type (0.785 -> "0.79", 0.78 stays "0.78")."""
    return f"{math.ceil(round(reachable * 100, 6)) / 100:.2f}"


def select_blocks(scores: list[BlockScore], table: LatencyTable, budget: Budget, selector: str = "greedy",
                  extra_saving_ms: float = 0.0) -> Selection:
    full = table.full.median_ms
    target = budget.target_ms(full) - extra_saving_ms
    required = full - target
    usable = [s for s in scores if s.saving_ms > 0]

    def saving(blocks: list[str]) -> float:  # the table's latency model: additive, or with learned interactions
        return full - table.predicted_ms(blocks)

    if saving([s.block for s in usable]) < required - 1e-9:
        raise UsageError(
            f"latency budget {budget.describe()} cannot be reached: dropping every candidate block is predicted to "
            f"keep {best_reachable_ratio(table):.3f} of the original latency ({full:.3f} ms on "
            f"[{table.fingerprint.describe()}]). Choose a budget of at least {smallest_budget_text(best_reachable_ratio(table))}."
        )
    if selector == "greedy":
        dropped = _greedy(usable, required, saving)
    elif selector == "knapsack":
        dropped = _knapsack(usable, required, full, saving)
        if table.latency_model.kind != "additive":
            dropped = _cover_under_model(dropped, usable, required, saving)
    else:
        raise UsageError(f"unknown selector '{selector}'; choose one of: {', '.join(SELECTORS)}.")
    return Selection(dropped, table.predicted_ms(dropped), table.predicted_ratio(dropped), target, selector,
                     extra_saving_ms)


Saving = Callable[[list[str]], float]  # blocks -> latency the table predicts dropping them saves (ms)


def _greedy(usable: list[BlockScore], required_ms: float, saving: Saving) -> list[str]:
    chosen: list[str] = []
    for s in usable:  # already sorted by score
        if saving(chosen) >= required_ms - 1e-12:
            break
        chosen.append(s.block)
    return chosen


def _cover_under_model(chosen: list[str], usable: list[BlockScore], required_ms: float, saving: Saving) -> list[str]:
    """The knapsack's cover (solved on single-block savings) made a cover under a model with interactions:
    blocks added in score order while it falls short, then the least recoverable ones removed while it holds."""
    chosen = list(chosen)
    for s in usable:
        if saving(chosen) >= required_ms - 1e-12:
            break
        if s.block not in chosen:
            chosen.append(s.block)
    by_cost = sorted((s for s in usable if s.block in chosen), key=lambda s: (-s.recoverability, s.block))
    for s in by_cost:
        rest = [b for b in chosen if b != s.block]
        if saving(rest) >= required_ms - 1e-12:
            chosen = rest
    return chosen


def _knapsack(usable: list[BlockScore], required_ms: float, full_ms: float, saving: Saving) -> list[str]:
    """Exact covering knapsack on a discretised saving axis (rounded down, so the cover stays a cover)."""
    if required_ms <= 0:
        return []
    unit = full_ms / _KNAPSACK_UNITS
    need = math.ceil(required_ms / unit - 1e-9)
    weights = [max(0, math.floor(s.saving_ms / unit)) for s in usable]
    if sum(weights) < need:  # rounding down lost the cover: fall back to exact greedy coverage
        return _greedy(usable, required_ms, saving)
    best = [math.inf] * (need + 1)
    picks: list[int] = [0] * (need + 1)  # bitset of chosen items per state
    best[0] = 0.0
    for i, (s, w) in enumerate(zip(usable, weights)):
        for have in range(need, -1, -1):
            if best[have] == math.inf:
                continue
            reach = min(need, have + w)
            value = best[have] + s.recoverability
            if value < best[reach] - 1e-15:
                best[reach], picks[reach] = value, picks[have] | (1 << i)
    mask = picks[need]
    return [s.block for i, s in enumerate(usable) if mask >> i & 1]
