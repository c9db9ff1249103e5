"""Measure-and-correct selection against fake end-to-end measurements."""

from pipeline.latency.budget import Budget
from pipeline.latency.selection import score_blocks, select_blocks
from profilers.stats import summarize
from tests.recorded_tables import recorded_table


def _measured_by_size(ratios: dict[int, float]):
    """A fake end-to-end measurement: the original at 1 ms, a selection at the ratio given for its size."""
    from pipeline.latency.profiling import EndToEnd

    def measure(dropped):
        ratio = ratios[len(dropped)]
        return EndToEnd(summarize([1.0] * 3), summarize([ratio] * 3), ratio, "stable")

    return measure


def _selector(budget: str):
    table = recorded_table()  # full 4.0 ms; savings b1 .31, b2 .11, b3 .20, b4 0
    scores = score_blocks({"b1": 0.1, "b2": 0.2, "b3": 0.3, "b4": 0.4}, table)  # order b1, b3, b2
    return lambda extra_ms: select_blocks(scores, table, Budget.parse(budget), "greedy", extra_ms)


def test_a_measured_miss_selects_more_blocks():
    from pipeline.latency.measured_selection import select_by_measurement

    # 0.95 needs 0.2 ms: b1 alone (predicted 0.92); it measures 0.97, so b1 and b3 are chosen, and meet
    attempts, chosen = select_by_measurement(_selector("0.95"), _measured_by_size({1: 0.97, 2: 0.9}),
                                             Budget.parse("0.95"), 4.0, 3)
    assert [a["dropped"] for a in attempts] == [["b1"], ["b1", "b3"]]
    assert [a["meets_budget"] for a in attempts] == [False, True] and chosen == 1


def test_a_measurement_far_under_the_budget_selects_fewer_and_keeps_the_closest_that_meets():
    from pipeline.latency.measured_selection import select_by_measurement

    # 0.9 needs 0.4 ms: b1 and b3 (predicted 0.87); they measure 0.80, 0.4 ms to spare, so b1 alone is tried
    attempts, chosen = select_by_measurement(_selector("0.9"), _measured_by_size({2: 0.8, 1: 0.88}),
                                             Budget.parse("0.9"), 4.0, 3)
    assert [a["dropped"] for a in attempts] == [["b1", "b3"], ["b1"]]
    assert chosen == 1 and attempts[chosen]["measured"]["ratio_median"] == 0.88

    # when the fewer blocks miss, the earlier selection that met is kept
    attempts, chosen = select_by_measurement(_selector("0.9"), _measured_by_size({2: 0.8, 1: 0.93}),
                                             Budget.parse("0.9"), 4.0, 3)
    assert len(attempts) >= 2 and chosen == 0


def test_after_a_miss_and_a_large_surplus_the_saving_halfway_between_is_tried():
    from types import SimpleNamespace

    from pipeline.latency.measured_selection import select_by_measurement

    def select(extra_ms):  # one more block per 0.1 ms asked; each predicted to save 0.4 ms of 4.0
        n = 1 + round(extra_ms / 0.1)
        return SimpleNamespace(dropped=[f"b{i}" for i in range(n)], predicted_ms=4.0 - 0.4 * n,
                               predicted_ratio=1.0 - 0.1 * n)

    # 0.9: one block measures 0.95 (a miss), three measure 0.7 (far under); two, halfway, measure 0.88
    attempts, chosen = select_by_measurement(select, _measured_by_size({1: 0.95, 3: 0.7, 2: 0.88}),
                                             Budget.parse("0.9"), 4.0, 5)
    assert [len(a["dropped"]) for a in attempts] == [1, 3, 2]
    assert chosen == 2 and attempts[chosen]["measured"]["ratio_median"] == 0.88


def test_without_a_measurement_the_first_selection_is_kept_unmeasured():
    from pipeline.latency.measured_selection import select_by_measurement

    attempts, chosen = select_by_measurement(_selector("0.9"), None, Budget.parse("0.9"), 4.0, 3)
    assert chosen == 0 and len(attempts) == 1 and attempts[0]["measured"] is None
