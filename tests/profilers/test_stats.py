"""Timing statistics: median and spread, paired differences, when a median is stable."""

import pytest

from profilers.stats import median_is_stable, paired_differences, summarize


def test_summarize_reports_median_and_spread():
    s = summarize([1, 2, 3, 4, 100])
    assert s.median_ms == 3 and s.rounds == 5 and s.spread_ms == 2
    with pytest.raises(ValueError):
        summarize([])


def test_paired_differences_cancel_shared_drift():
    full = [10.0, 20.0, 30.0]  # drift hits whole rounds
    variant = [9.0, 19.0, 29.0]
    assert paired_differences(full, variant) == [1.0, 1.0, 1.0]


def test_median_stability_needs_rounds_and_agreement():
    assert not median_is_stable([1.0] * 3, 0.02, min_rounds=5)
    assert median_is_stable([1.0, 1.01, 0.99, 1.0, 1.0, 1.0, 1.0, 1.0], 0.02, min_rounds=5)
    assert not median_is_stable([1, 1, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5], 0.02, min_rounds=5)
