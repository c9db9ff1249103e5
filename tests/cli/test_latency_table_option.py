"""`pipeline run --latency-table` takes what a user has at hand: a run folder's own `latency_table.json` (the table
wrapped with where it came from) or the run folder itself, and refuses anything else in one line naming the fix."""

import json

import pytest

from tests.cli.invoke import assert_clean_error, invoke
from tests.run_folders import run_args


@pytest.mark.slow  # a whole (tiny) run
@pytest.mark.parametrize("given", ["latency_table.json", "the run folder"])
def test_a_run_reuses_the_table_of_an_earlier_run_folder(capsys, tmp_path, monkeypatch, finished_run, given):
    monkeypatch.setenv("PRACTISE_HOME", str(tmp_path / "home"))  # an empty store: the table can only come from the file
    source = finished_run / "latency_table.json" if given == "latency_table.json" else finished_run
    code, _, err = invoke(capsys, *run_args(tmp_path, name="again", extra=("--latency-table", str(source))))
    assert code == 0, err
    earlier = json.loads((finished_run / "latency_table.json").read_text())
    reused = json.loads((tmp_path / "again" / "latency_table.json").read_text())
    assert reused["source"] == "file"
    assert reused["table"] == earlier["table"]  # the very table, not one measured again here


def test_a_file_or_folder_that_holds_no_table_is_refused_in_one_line_naming_what_to_pass(capsys, tmp_path,
                                                                                          finished_run):
    code, _, err = invoke(capsys, *run_args(tmp_path, extra=("--latency-table", str(finished_run / "report.json"))))
    assert_clean_error(code, err, 2, "report.json' is not a latency table (no field 'model')")
    assert "a run folder's latency_table.json, or the run folder" in err
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    code, _, err = invoke(capsys, *run_args(tmp_path, name="run2", extra=("--latency-table", str(empty))))
    assert_clean_error(code, err, 2, "not-a-run' is a folder without a latency_table.json")


def test_fitting_a_run_folders_table_in_place_is_refused_so_the_run_folder_stays_as_it_ran(capsys, tmp_path,
                                                                                          finished_run):
    """`tables fit` reads the run folder's file like any table, but writing its fit back there would replace the
    run's record (source, path) with a bare table."""
    recorded = finished_run / "latency_table.json"
    before = recorded.read_bytes()
    code, _, err = invoke(capsys, "tables", "fit", str(recorded), str(tmp_path / "validation.json"))
    assert_clean_error(code, err, 2, "is a run folder's record of its table")
    assert "pass --output FILE" in err and recorded.read_bytes() == before
