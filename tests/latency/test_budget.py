"""Latency budgets: ratios, percentages and milliseconds, and the ones refused."""

import pytest

from pipeline.core.errors import UsageError
from pipeline.latency.budget import Budget


@pytest.mark.parametrize("text,ratio,ms", [("0.78", 0.78, None), ("78%", 0.78, None), ("1", 1.0, None),
                                           ("12ms", None, 12.0), (" 3.5 MS ", None, 3.5)])
def test_budget_parsing(text, ratio, ms):
    b = Budget.parse(text)
    assert b.ratio == (pytest.approx(ratio) if ratio else None) and b.absolute_ms == ms


@pytest.mark.parametrize("text", ["0", "1.5", "-0.3", "abc", "150%", "0ms", ""])
def test_bad_budgets_are_usage_errors(text):
    with pytest.raises(UsageError):
        Budget.parse(text)
