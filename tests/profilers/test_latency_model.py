"""The latency model that learns interactions: fitting, held-out choice, tables carrying it, selection using it."""

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.latency.budget import Budget
from pipeline.latency.selection import score_blocks, select_blocks
from profilers.latency_model import (
    ADDITIVE,
    INTERACTIONS,
    Drop,
    LatencyModel,
    fit_latency_model,
    held_out_errors,
)
from profilers.stats import summarize
from profilers.table import LatencyTable
from tests.recorded_tables import fingerprint

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
FRACTIONS = {f"b{i}": 0.02 + 0.01 * (i % 3) for i in range(8)}  # single-block savings, fractions of full


def _drops(extra: float, noise: float = 0.0, count: int = 12, seed: int = 0) -> list[Drop]:
    """Random multi-block drops measured as if every block beyond the first saved `extra` more."""
    rng = random.Random(seed)
    drops = []
    for _ in range(count):
        blocks = tuple(sorted(rng.sample(list(FRACTIONS), rng.randint(2, len(FRACTIONS)))))
        saving = sum(FRACTIONS[b] for b in blocks) + extra * (len(blocks) - 1)
        drops.append(Drop(blocks, 1.0 - saving + rng.uniform(-noise, noise)))
    return drops


def test_interactions_are_learned_and_chosen_when_they_predict_held_out_drops_better():
    model = fit_latency_model(FRACTIONS, _drops(extra=0.02, noise=0.002))
    assert model.kind == INTERACTIONS
    assert model.extra_fraction == pytest.approx(0.02, abs=0.003)
    held_out = model.evaluation["held_out"]
    assert held_out[INTERACTIONS]["median_abs_relative_error"] < 0.01
    assert held_out[ADDITIVE]["median_abs_relative_error"] > 0.1
    assert model.interaction_fraction(["b0"]) == 0.0  # a single-block drop is predicted as measured


def test_additive_is_kept_when_interactions_do_not_predict_better():
    model = fit_latency_model(FRACTIONS, _drops(extra=0.0, noise=0.0))
    assert model.kind == ADDITIVE
    assert "additive model predicted held-out drops as well or better" in model.evaluation["reason"]
    assert model.interaction_fraction(["b0", "b1", "b2"]) == 0.0


def test_too_few_distinct_drops_keep_the_additive_model_and_say_why():
    drops = [Drop(("b0", "b1"), 0.9), Drop(("b2", "b3", "b4"), 0.85)] * 3  # six drops, two distinct
    model = fit_latency_model(FRACTIONS, drops)
    assert model.kind == ADDITIVE and "2 distinct multi-block drops" in model.evaluation["reason"]


def test_repeated_drops_are_held_out_together():
    """A drop measured twice must not be predicted by a model fitted on its own twin."""
    drops = _drops(extra=0.0, count=6, seed=1)
    odd = Drop(("b2", "b3", "b4"), 0.5)  # far faster than its blocks add up to; no other drop is like it
    additive, fitted = held_out_errors(drops + [odd, odd], FRACTIONS)
    assert fitted[-1] == pytest.approx(additive[-1], abs=1e-3)  # nothing learned about it from the others


def _table(model: LatencyModel | None = None) -> LatencyTable:
    savings = {b: summarize([f * 10.0]) for b, f in FRACTIONS.items()}
    table = LatencyTable("net", "h", fingerprint(), summarize([10.0]), savings)
    return table if model is None else replace(table, latency_model=model)


def test_a_table_carries_its_model_and_older_tables_read_as_additive():
    table = _table().with_model_fitted([{"dropped": list(d.dropped), "measured_ratio": d.measured_ratio}
                                        for d in _drops(extra=0.02)])
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.latency_model.kind == INTERACTIONS
    blocks = ["b0", "b1", "b2", "b3"]
    assert again.predicted_ratio(blocks) == pytest.approx(table.predicted_ratio(blocks))
    assert again.predicted_ratio(blocks) < again.additive_ratio(blocks) - 0.05
    old = table.to_dict()
    del old["latency_model"]
    assert LatencyTable.from_dict(old).predicted_ratio(blocks) == pytest.approx(table.additive_ratio(blocks))


def test_selection_uses_the_learned_interactions():
    interactions = LatencyModel(INTERACTIONS, extra_fraction=0.02)
    recoverability = {b: 0.1 + 0.01 * i for i, b in enumerate(FRACTIONS)}
    for selector in ("greedy", "knapsack"):
        additive = _table()
        learned = _table(interactions)
        plain = select_blocks(score_blocks(recoverability, additive), additive, Budget.parse("0.8"), selector)
        fitted = select_blocks(score_blocks(recoverability, learned), learned, Budget.parse("0.8"), selector)
        assert len(fitted.dropped) < len(plain.dropped), selector
        assert fitted.predicted_ratio <= 0.8 + 1e-9
        assert learned.additive_ratio(fitted.dropped) > 0.8  # the additive table would have called it a miss


def test_knapsack_under_interactions_is_a_minimal_cover():
    learned = _table(LatencyModel(INTERACTIONS, extra_fraction=0.015, pair_fractions={"b1+b2": 0.03}))
    rng = random.Random(3)
    for _ in range(10):
        recoverability = {b: rng.uniform(0.01, 1.0) for b in FRACTIONS}
        budget = Budget.parse(str(round(rng.uniform(0.6, 0.95), 3)))
        sel = select_blocks(score_blocks(recoverability, learned), learned, budget, "knapsack")
        assert sel.predicted_ratio <= budget.ratio + 1e-9
        for block in sel.dropped:  # removing any block breaks the cover
            assert learned.predicted_ratio([b for b in sel.dropped if b != block]) > budget.ratio - 1e-9


@pytest.mark.parametrize("name, kind", [
    ("latency_table_efficientnet_lite0_h100_cuda_graphs", INTERACTIONS),
    ("latency_table_efficientnet_lite0_h100_torch", ADDITIVE),
])
def test_recorded_h100_tables(name, kind):
    """Measured on an H100: with CUDA graphs the savings do not add up and the model learns it; eager they do."""
    table = LatencyTable.read(RESULTS / f"{name}.json")
    checks = json.loads((RESULTS / f"{name}.validation.json").read_text())["checks"]
    fitted = table.with_model_fitted(checks)
    assert fitted.latency_model.kind == kind
    held_out = fitted.latency_model.evaluation["held_out"]
    if kind == INTERACTIONS:
        assert held_out[INTERACTIONS]["median_abs_relative_error"] < 0.5 * held_out[ADDITIVE]["median_abs_relative_error"]
    all_blocks = list(table.savings)
    if kind == ADDITIVE:
        assert fitted.predicted_ratio(all_blocks) == pytest.approx(table.additive_ratio(all_blocks))
    else:  # every multi-block drop ran faster than its blocks add up to
        assert fitted.predicted_ratio(all_blocks) < table.additive_ratio(all_blocks) - 0.1
