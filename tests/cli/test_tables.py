"""pipeline tables: export and import between machines."""

from pathlib import Path

from tests.cli.invoke import TINY, assert_clean_error, invoke


def test_tables_export_and_import_move_a_table_between_machines(capsys, tmp_path, monkeypatch):
    code, out, _ = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch",
                            "--profile-time-cap", "1")
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


RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_tables_fit_learns_the_h100_cuda_graph_interactions_and_refuses_a_foreign_validation(capsys, tmp_path):
    import json

    graphs = RESULTS / "latency_table_efficientnet_lite0_h100_cuda_graphs"
    fitted = tmp_path / "fitted.json"
    code, out, err = invoke(capsys, "tables", "fit", f"{graphs}.json", f"{graphs}.validation.json", "-o", str(fitted))
    assert code == 0, err
    assert "latency model: interactions" in out
    assert json.loads(fitted.read_text())["latency_model"]["kind"] == "interactions"
    code, out, _ = invoke(capsys, "tables", "show", str(fitted))
    assert code == 0 and "latency model: interactions" in out
    code, _, err = invoke(capsys, "tables", "fit", str(RESULTS / "latency_table_efficientnet_lite0_cpu.json"),
                          f"{graphs}.validation.json", "-o", str(tmp_path / "x.json"))
    assert_clean_error(code, err, 2, "validates a table measured on other settings or another device")
    assert not (tmp_path / "x.json").exists()
    code, _, err = invoke(capsys, "tables", "fit", f"{graphs}.json", f"{graphs}.json", "-o", str(tmp_path / "x.json"))
    assert_clean_error(code, err, 2, "is not a validation file")
