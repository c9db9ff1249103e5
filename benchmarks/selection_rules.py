"""Baseline rules for choosing blocks under a latency budget, for comparison with PRACTISE's scores.

Each rule orders the candidates; `select_blocks(..., selector="greedy")` then takes them in that order
until the predicted saving covers the budget, exactly as it does with recoverability scores. The
order is carried by `BlockScore.score` (the rank), so rules and scores share one selector.

- first: execution order (the earliest blocks of the network first).
- largest_saving: the largest measured latency saving first (fewest blocks for the budget).
- least_macs: the fewest multiply-accumulates first (ties: fewer parameters, then execution order).
- random: a random order drawn from `seed`.
"""

from __future__ import annotations

import random

from pipeline.core.errors import UsageError
from pipeline.latency.budget import Budget
from pipeline.latency.selection import BlockScore, Selection, select_blocks
from pipeline.network.blocks import NetworkStructure
from profilers import LatencyTable

RULES = ("first", "largest_saving", "least_macs", "random")


def rule_order(rule: str, structure: NetworkStructure, table: LatencyTable, seed: int = 0) -> list[str]:
    """The candidates in the order `rule` would drop them."""
    candidates = structure.candidates
    position = {c.name: i for i, c in enumerate(candidates)}
    if rule == "first":
        order = [c.name for c in candidates]
    elif rule == "largest_saving":
        order = sorted(position, key=lambda b: (-table.savings[b].median_ms, position[b]))
    elif rule == "least_macs":
        order = [c.name for c in sorted(candidates, key=lambda c: (c.macs, c.params, position[c.name]))]
    elif rule == "random":
        order = [c.name for c in candidates]
        random.Random(seed).shuffle(order)
    else:
        raise UsageError(f"unknown selection rule '{rule}'; choose one of: {', '.join(RULES)}.")
    return order


def rule_scores(rule: str, structure: NetworkStructure, table: LatencyTable, seed: int = 0) -> list[BlockScore]:
    """BlockScores whose score is the rule's rank (recoverability is not measured: NaN)."""
    full = table.full.median_ms
    return [
        BlockScore(block, float("nan"), table.savings[block].median_ms,
                   100.0 * table.savings[block].median_ms / full, float(rank))
        for rank, block in enumerate(rule_order(rule, structure, table, seed))
    ]


def select_by_rule(rule: str, structure: NetworkStructure, table: LatencyTable, budget: Budget, seed: int = 0,
                   extra_saving_ms: float = 0.0) -> Selection:
    """Greedy cover of the budget in the rule's order (blocks predicted to save nothing are skipped)."""
    selection = select_blocks(rule_scores(rule, structure, table, seed), table, budget, "greedy", extra_saving_ms)
    selection.selector = f"rule:{rule}"
    return selection
