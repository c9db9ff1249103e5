"""Latency tables: JSON round trip, refusal on another device or network, the on-disk store."""

import contextlib
import functools
import json
import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from profilers.stats import summarize
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


# -- two processes saving the SAME table key ----------------------------------------------------------------------
# Same network, same device fingerprint: one file. Losing nothing means every read of it, during and after the
# writes, is one writer's complete table (never half a file, never a mix of two), and the file ends as the last
# table one of the writers saved.


def _writers_table(worker: int, save: int) -> LatencyTable:
    """Writer `worker`'s `save`-th table: one key for all, its own figures, and writer 1's file 2 kB longer."""
    table = recorded_table()
    return replace(table, full=summarize([4.0 + worker, 4.1 + save / 100, 3.9]),
                   method={"rounds": 3, "writer": worker, "save": save, "note": "x" * (2000 * worker)},
                   created_at=f"2026-11-25T00:00:{save:02d}Z")


def _what_is_wrong(text: str, saves: int) -> str | None:
    """None when `text` is exactly one writer's complete table, else what it is instead."""
    try:
        data = json.loads(text)
        written = (data["method"]["writer"], data["method"]["save"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return f"not a whole table ({type(exc).__name__}, {len(text)} characters)"
    if written[0] not in (0, 1) or not 0 <= written[1] < saves or data != _writers_table(*written).to_dict():
        return f"a mix of two writers' tables (says writer {written[0]}, save {written[1]})"
    return None


def _no_lock(lock_file):
    return contextlib.nullcontext()


def _write_in_place(barrier, path, data):
    """A store without atomic writes: truncate the file and write it, in two halves with the other
    writer's halves forced in between by a barrier (a schedule a busy machine may produce)."""
    text = json.dumps(data, indent=2) + "\n"
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        barrier.wait()
        f.write(text[len(text) // 2 :])
    barrier.wait()  # both writers done before either reads back


def _save_same_key(root, worker: int, saves: int, barrier, found, unprotected: bool) -> None:
    """One writer process: save `saves` tables under one key, reading the file back after each save."""
    import profilers.table as table_module

    if unprotected:  # the store's lock and atomic write taken away
        table_module.exclusive_lock = _no_lock
        table_module.write_json_atomic = functools.partial(_write_in_place, barrier)
    store = TableStore(root)
    barrier.wait()  # start together
    problems = []
    for save in range(saves):
        path = store.save(_writers_table(worker, save))
        problem = _what_is_wrong(path.read_text(), saves)
        if problem:
            problems.append(f"writer {worker} read back {problem}")
    found.put(problems)


def _two_writers(root, saves: int, unprotected: bool = False) -> list[str]:
    """Run two writer processes on one key; everything either saw wrong, and what the file ended as."""
    ctx = mp.get_context("spawn")
    barrier, found = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_save_same_key, args=(root, w, saves, barrier, found, unprotected)) for w in (0, 1)]
    for proc in procs:
        proc.start()
    problems = [p for _ in procs for p in found.get(timeout=120)]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    files = TableStore(root).list()
    final = TableStore(root).path_for("net", "abc123", fingerprint())
    ending = _what_is_wrong(final.read_text(), saves)
    if ending:
        problems.append(f"the file ended as {ending}")
    elif json.loads(final.read_text())["method"]["save"] != saves - 1:
        problems.append("the file ended as an earlier table than the last one saved")
    leftovers = list(Path(root).glob("*.partial*"))
    if len(files) != 1 or leftovers:
        problems.append(f"the store holds {len(files)} tables and temporary files {leftovers}")
    return problems


def test_two_processes_saving_the_same_table_lose_nothing(tmp_path):
    assert _two_writers(tmp_path, saves=20) == []


def test_the_same_key_check_catches_a_store_without_its_lock_and_atomic_write(tmp_path):
    """The check above can fail: with the lock and the atomic write removed, the forced schedule mixes the files."""
    problems = _two_writers(tmp_path, saves=3, unprotected=True)
    assert any("read back" in p for p in problems) and any("ended as" in p for p in problems), problems
