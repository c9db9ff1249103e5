"""Block selection on a recorded table: scores, greedy and knapsack, unreachable budgets."""

import itertools
import random

import pytest

from pipeline.core.errors import UsageError
from pipeline.latency.budget import Budget
from pipeline.latency.selection import best_reachable_ratio, score_blocks, select_blocks
from profilers.stats import summarize
from profilers.table import LatencyTable
from tests.recorded_tables import fingerprint, recorded_table


def test_greedy_takes_best_scores_until_the_budget_is_covered():
    table = recorded_table()  # full 4.0 ms; savings b1 .31, b2 .11, b3 .20, b4 0
    scores = score_blocks({"b1": 0.5, "b2": 0.01, "b3": 0.1, "b4": 0.0}, table)
    assert [s.block for s in scores][:3] == ["b2", "b3", "b1"]  # recoverability / saving percent
    assert scores[-1].block == "b4"  # no saving: never preferred
    sel = select_blocks(scores, table, Budget.parse("0.9"), "greedy")  # needs 0.4 ms
    assert sel.dropped == ["b2", "b3", "b1"]
    assert sel.predicted_ms <= 3.6 + 1e-9


def test_knapsack_beats_greedy_when_greedy_overshoots():
    table = recorded_table()
    scores = score_blocks({"b1": 0.5, "b2": 0.01, "b3": 0.1, "b4": 0.0}, table)
    # needs 0.32 ms: greedy takes b2, b3 (0.31, short) and then b1 (recoverability 0.61);
    # the cheapest cover is b1 + b2 (0.42 ms saved, recoverability 0.51)
    assert sorted(select_blocks(scores, table, Budget.parse("0.92"), "greedy").dropped) == ["b1", "b2", "b3"]
    assert sorted(select_blocks(scores, table, Budget.parse("0.92"), "knapsack").dropped) == ["b1", "b2"]


def test_knapsack_is_optimal_against_brute_force():
    rng = random.Random(0)
    for trial in range(20):
        n = 8
        savings = {f"b{i}": [rng.uniform(0.05, 0.5)] for i in range(n)}
        table = LatencyTable("net", "h", fingerprint(), summarize([5.0]), {k: summarize(v) for k, v in savings.items()})
        recov = {b: rng.uniform(0.01, 1.0) for b in savings}
        budget = Budget.parse(str(round(rng.uniform(0.5, 0.95), 3)))
        required = 5.0 - budget.target_ms(5.0)
        covers = [
            (sum(recov[b] for b in combo), combo)
            for k in range(n + 1) for combo in itertools.combinations(savings, k)
            if sum(savings[b][0] for b in combo) >= required
        ]
        if not covers:
            with pytest.raises(UsageError):
                select_blocks(score_blocks(recov, table), table, budget, "knapsack")
            continue
        best = min(covers)
        sel = select_blocks(score_blocks(recov, table), table, budget, "knapsack")
        assert sum(recov[b] for b in sel.dropped) <= best[0] + 1e-6
        assert sel.predicted_ms <= budget.target_ms(5.0) + 5.0 / 4000


def test_unreachable_budget_names_the_best_reachable_ratio():
    table = recorded_table()
    scores = score_blocks({"b1": 1, "b2": 1, "b3": 1, "b4": 1}, table)
    reachable = best_reachable_ratio(table)
    assert reachable == pytest.approx((4.0 - 0.62) / 4.0)
    with pytest.raises(UsageError, match=f"keep {reachable:.3f}"):
        select_blocks(scores, table, Budget.parse("0.5"), "greedy")


def test_absolute_budget_and_extra_saving():
    table = recorded_table()
    scores = score_blocks({"b1": 0.1, "b2": 0.1, "b3": 0.1, "b4": 0.1}, table)
    assert select_blocks(scores, table, Budget.parse("3.8ms")).predicted_ms <= 3.8
    more = select_blocks(scores, table, Budget.parse("3.8ms"), extra_saving_ms=0.2)
    assert more.predicted_ms <= 3.6 and len(more.dropped) >= 2
