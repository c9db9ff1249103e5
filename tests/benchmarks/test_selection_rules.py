"""Baseline selection rules: each orders the candidates and covers the budget greedily in that order."""

import pytest

from benchmarks.selection_rules import RULES, rule_order, select_by_rule
from pipeline.core.errors import UsageError
from pipeline.latency.budget import Budget
from pipeline.network.blocks import Candidate, FeaturePoint, NetworkStructure
from tests.recorded_tables import recorded_table


def _structure():  # the recorded table's blocks; b2 and b3 tie on MACs, b3 has fewer parameters
    cands = [Candidate("b1", (8, 4, 4), 300, 10), Candidate("b2", (8, 4, 4), 100, 20),
             Candidate("b3", (8, 4, 4), 100, 5), Candidate("b4", (8, 4, 4), 50, 1)]
    return NetworkStructure(cands, {}, FeaturePoint("pool", "input"), 550)


def test_rule_orders():
    table, structure = recorded_table(), _structure()  # savings b1 .31, b2 .11, b3 .20, b4 0
    assert rule_order("first", structure, table) == ["b1", "b2", "b3", "b4"]
    assert rule_order("largest_saving", structure, table) == ["b1", "b3", "b2", "b4"]
    assert rule_order("least_macs", structure, table) == ["b4", "b3", "b2", "b1"]
    assert sorted(rule_order("random", structure, table, seed=3)) == ["b1", "b2", "b3", "b4"]
    assert rule_order("random", structure, table, seed=3) == rule_order("random", structure, table, seed=3)
    with pytest.raises(UsageError):
        rule_order("best", structure, table)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_covers_the_budget(rule):
    table = recorded_table()
    sel = select_by_rule(rule, _structure(), table, Budget.parse("0.9"), seed=1)
    assert sel.predicted_ms <= 0.9 * table.full.median_ms + 1e-9
    assert "b4" not in sel.dropped  # saves nothing: skipped
    assert sel.selector == f"rule:{rule}"


def test_least_macs_skips_blocks_that_save_nothing():
    sel = select_by_rule("least_macs", _structure(), recorded_table(), Budget.parse("0.95"))
    assert sel.dropped == ["b3"]  # b4 has the fewest MACs but saves nothing; b3 (0.2 ms) covers 0.2 ms
