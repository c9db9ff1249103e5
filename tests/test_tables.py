import json
import multiprocessing as mp
from dataclasses import replace

import pytest

from pipeline.core.errors import UsageError
from profilers.fingerprint import DeviceFingerprint
from profilers.stats import median_is_stable, paired_differences, summarize
from profilers.table import LatencyTable, TableStore


def fingerprint(**changes) -> DeviceFingerprint:
    base = DeviceFingerprint("Test CPU 9000", "cpu", "", "", "onnxruntime-cpu", "1.32.0", "fp32", 1, 224, 2,
                             "2.14.1", "x86_64")
    return replace(base, **changes)


def recorded_table(**fp_changes) -> LatencyTable:
    """A table as a profiler recorded it (values from an EfficientNet-Lite0 run, rounded)."""
    savings = {"b1": [0.30, 0.32, 0.31], "b2": [0.10, 0.12, 0.11], "b3": [0.20, 0.19, 0.21], "b4": [-0.01, 0.0, 0.01]}
    return LatencyTable("net", "abc123", fingerprint(**fp_changes), summarize([4.0, 4.1, 3.9]),
                        {k: summarize(v) for k, v in savings.items()}, {"rounds": 3}, "2026-11-25T00:00:00Z")


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


def test_table_json_round_trip_and_prediction(tmp_path):
    table = recorded_table()
    store = TableStore(tmp_path)
    path = store.save(table)
    again = store.find("net", "abc123", table.fingerprint)
    assert again.to_dict() == table.to_dict()
    assert again.predicted_ms(["b1", "b2"]) == pytest.approx(4.0 - 0.31 - 0.11)
    assert json.loads(path.read_text())["fingerprint"]["device_name"] == "Test CPU 9000"


def test_table_from_another_device_is_refused_with_both_fingerprints():
    table = recorded_table()
    other = fingerprint(device_name="Other CPU", threads=8)
    with pytest.raises(UsageError) as err:
        table.check_usable("abc123", other, ["b1", "b2", "b3", "b4"])
    message = str(err.value)
    assert "Test CPU 9000" in message and "Other CPU" in message and "threads" in message


def test_table_for_another_architecture_is_refused():
    with pytest.raises(UsageError, match="another network architecture"):
        recorded_table().check_usable("zzz999", None, ["b1", "b2", "b3", "b4"])


def test_unreadable_table_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="is not a latency table"):
        LatencyTable.read(bad)


def _save_many(args):
    root, worker = args
    store = TableStore(root)
    for i in range(10):
        store.save(recorded_table(batch=worker * 100 + i))


def test_concurrent_writers_lose_no_table(tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_save_many, [(tmp_path, 1), (tmp_path, 2)])
    tables = TableStore(tmp_path).list()
    assert len(tables) == 20
    assert not list(tmp_path.glob("*.tmp"))
