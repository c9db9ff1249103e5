"""tests/records.py: decisions compared exactly, floats within the stated tolerance."""

import pytest

from tests.records import assert_records_close, record_differences

SCORED = {"blocks": {"layers.1.1": {"block": "layers.1.1", "recoverability": 0.00015223224181681871,
                                    "adaptor_sites": 4, "final_train_loss": None}},
          "dropped": ["layers.1.1"], "precision": "fp16", "meets_budget": True}


def _with(**changes) -> dict:
    import copy

    record = copy.deepcopy(SCORED)
    block = record["blocks"]["layers.1.1"]
    for key, value in changes.items():
        (block if key in block else record)[key] = value
    return record


def test_floats_within_the_tolerance_pass_and_beyond_it_fail():
    rounded = _with(recoverability=0.00015223225240002978)  # the two values: 7e-8 relative apart
    assert rounded != SCORED  # an exact comparison fails on rounding
    assert_records_close(rounded, SCORED, rel=1e-6)
    assert record_differences(_with(recoverability=0.000152233), SCORED, rel=1e-6) == [
        "$.blocks.layers.1.1.recoverability: 0.000152233 against 0.00015223224181681871 (rel 1e-06, abs 0)"]


@pytest.mark.parametrize("changes", [{"dropped": ["layers.0.0"]}, {"dropped": ["layers.1.1", "layers.0.0"]},
                                     {"precision": "int8"}, {"adaptor_sites": 3}, {"meets_budget": False},
                                     {"final_train_loss": 0.0}, {"adaptor_sites": 4.0}, {"meets_budget": 1}])
def test_decisions_and_types_must_be_equal_exactly(changes):
    with pytest.raises(AssertionError, match=next(iter(changes))):
        assert_records_close(_with(**changes), SCORED, rel=1e-6)


def test_keys_must_be_the_same():
    extra = {**SCORED, "kept": "recovered"}
    assert record_differences(extra, SCORED, rel=1e-6) == ["$: keys ['kept'] in only one of them"]
