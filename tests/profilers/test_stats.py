"""Timing statistics: median and spread, paired differences, when a median is stable."""

import pytest

from profilers.stats import median_is_stable, paired_differences, ratios_are_settled, summarize


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


def test_a_paired_ratio_settles_under_drift_that_unsettles_each_median():
    drift = [1.0, 1.6, 0.8, 1.3, 0.9, 1.5, 1.1, 0.7, 1.4, 1.2, 1.0, 1.6]  # a busy machine slows whole rounds
    reference = [4.0 * d for d in drift]
    variant = [3.0 * d for d in drift]  # 0.75 of the reference in every round
    assert not median_is_stable(variant, 0.02, min_rounds=10)
    assert ratios_are_settled(reference, variant, 0.01, min_rounds=10)
    assert not ratios_are_settled(reference[:9], variant[:9], 0.01, min_rounds=10)  # too few rounds


def test_a_noisy_or_moving_ratio_is_not_settled():
    reference = [4.0] * 12
    noisy = [3.0 if i % 2 else 3.4 for i in range(12)]  # 0.75 / 0.85 alternating: a standard error of about 0.04
    assert not ratios_are_settled(reference, noisy, 0.01, min_rounds=10)
    shifted = [3.0] * 8 + [3.2] * 4  # the newest rounds moved: their spread is too wide to trust the median
    assert not ratios_are_settled(reference, shifted, 0.01, min_rounds=10)
