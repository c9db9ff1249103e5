"""Latency tables: JSON round trip, refusal on another device or network, the on-disk store."""

import json
import multiprocessing as mp

import pytest

from pipeline.core.errors import UsageError
from profilers.table import LatencyTable, TableStore
from tests.recorded_tables import fingerprint, recorded_table


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
