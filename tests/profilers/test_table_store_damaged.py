"""A damaged table in the store is named, set aside and measured again: never a traceback or a refusal."""

from profilers import TableStore
from tests.recorded_tables import fingerprint, recorded_table


def test_a_truncated_stored_table_is_set_aside_and_named(tmp_path):
    store = TableStore(tmp_path)
    path = store.save(recorded_table())
    assert store.find("net", "abc123", fingerprint()) is not None
    path.write_text(path.read_text()[:40])  # truncated, as a full disk or a crash in another tool leaves it
    said = []
    assert store.find("net", "abc123", fingerprint(), said.append) is None
    assert path.name in said[0] and "damaged" in said[0] and "measuring again" in said[0]
    assert not path.exists() and path.with_name(path.name + ".damaged").exists()
