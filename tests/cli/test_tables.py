"""pipeline tables: export and import between machines."""

from pathlib import Path

from tests.cli.invoke import TINY, assert_clean_error, invoke


def test_tables_export_and_import_move_a_table_between_machines(capsys, tmp_path, monkeypatch):
    code, out, _ = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch",
                            "--profile-time-cap", "5")
    assert code == 0
    stored = out.strip().splitlines()[-1].split("table: ")[1].split(" (")[0]
    exported = tmp_path / "device.json"
    assert invoke(capsys, "tables", "export", Path(stored).name, str(exported))[0] == 0
    monkeypatch.setenv("PRACTISE_HOME", str(tmp_path / "other-machine"))
    code, out, _ = invoke(capsys, "tables", "import", str(exported))
    assert code == 0 and "imported" in out
    code, out, _ = invoke(capsys, "tables", "list")
    assert "tiny_resnet" in out
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    code, _, err = invoke(capsys, "tables", "import", str(bad))
    assert_clean_error(code, err, 2, "is not a latency table")
