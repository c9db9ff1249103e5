"""A run folder has one owner at a time; --overwrite deletes only run folders; damaged stage files are redone."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from pipeline.core.errors import UsageError
from pipeline.run.runfolder import RunFolder, settings_hash
from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke
from tests.conftest import ROOT, write_images

HOLD = ("import sys; from pipeline.run.runfolder import RunFolder; "
        "RunFolder.open(sys.argv[1], {'a': 1}); print('owned', flush=True); sys.stdin.read()")


@pytest.fixture
def held_folder(tmp_path):
    """A run folder owned by another live process (which waits on its stdin)."""
    path = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    with holder:  # closes its pipes
        assert holder.stdout.readline().strip() == "owned"
        yield path, holder
        holder.kill()


def test_a_second_owner_is_refused_with_the_holder_named(held_folder):
    path, holder = held_folder
    with pytest.raises(UsageError, match=f"in use by process {holder.pid} on host {socket.gethostname()} since 20"):
        RunFolder.open(path, {"a": 1})


def test_a_lock_left_by_a_killed_process_is_taken_over(held_folder):
    path, holder = held_folder
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    said = []
    RunFolder.open(path, {"a": 1}, log=said.append)
    assert f"from process {holder.pid}" in said[0] and "taking over" in said[0]
    assert json.loads((path / ".owner.json").read_text())["pid"] == os.getpid()


def test_pipeline_run_on_a_folder_in_use_stops_with_one_line(capsys, held_folder, tmp_path):
    path, holder = held_folder
    data = write_images(tmp_path / "data", 8)
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(data), "--out", str(path))
    assert_clean_error(code, err, 2, f"in use by process {holder.pid}")


@pytest.mark.parametrize("foreign", [
    {"hash": "0123456789", "settings": {"model": "x"}},  # a hash that is not of these settings
    {"experiment": "thesis", "epochs": 90},  # another program's settings.json
])
def test_overwrite_never_deletes_a_folder_another_program_made(tmp_path, foreign):
    path = tmp_path / "results"
    path.mkdir()
    (path / "settings.json").write_text(json.dumps(foreign))
    (path / "weights.bin").write_bytes(b"precious")
    with pytest.raises(UsageError, match="refusing to delete it even with --overwrite"):
        RunFolder.open(path, {"a": 1}, overwrite=True)
    assert (path / "weights.bin").read_bytes() == b"precious"
    assert sorted(p.name for p in path.iterdir()) == ["settings.json", "weights.bin"]


def test_overwrite_accepts_a_run_folder_written_before_the_tool_marker(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    older = {"a": 1}
    (path / "settings.json").write_text(json.dumps({"hash": settings_hash(older), "created_at": "x", "settings": older}))
    (path / "selection.json").write_text("{}")
    RunFolder.open(path, {"a": 2}, overwrite=True)
    assert not (path / "selection.json").exists()


def test_a_damaged_stage_file_is_named_set_aside_and_takes_what_was_made_from_it(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {"a": 1})
    folder.write_json("latency_table.json", {"table": 1})
    folder.write_json("selection.json", {"dropped": ["x"]})
    folder.save_tensors("recovered_state_dict.pt", {"w": torch.zeros(2)})
    folder.write_json("recovery.json", {"kept": "recovered"})
    folder.file("selection.json").write_text('{"dropped": ["x"')  # truncated
    said = []
    RunFolder.open(tmp_path / "run", {"a": 1}, log=said.append)
    assert len(said) == 1 and "selection.json is damaged" in said[0]
    assert folder.has("selection.json.damaged") and folder.has("latency_table.json")
    assert not folder.has("recovery.json") and not folder.has("recovered_state_dict.pt")


@pytest.mark.parametrize("damaged", ["latency_table.json", "recoverability.json", "precisions.json"])
def test_a_damaged_input_of_the_plans_takes_the_selection_along(tmp_path, damaged):
    folder = RunFolder.open(tmp_path / "run", {"a": 1})
    for name in ("latency_table.json", "recoverability.json", "precisions.json", "selection.json", "recovery.json"):
        folder.write_json(name, {"x": 1})
    folder.file(damaged).write_text("{")
    said = []
    RunFolder.open(tmp_path / "run", {"a": 1}, log=said.append)
    assert f"{damaged} is damaged" in said[0] and "selection.json" in said[0]
    assert not folder.has("selection.json") and not folder.has("recovery.json")
    assert all(folder.has(n) for n in ("latency_table.json", "recoverability.json", "precisions.json") if n != damaged)


def test_a_corrupted_checkpoint_is_set_aside(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {"a": 1})
    folder.save_tensors("recovery_checkpoint.pt", {"step": 3})
    data = folder.file("recovery_checkpoint.pt").read_bytes()
    folder.file("recovery_checkpoint.pt").write_bytes(data[: len(data) // 2])
    said = []
    RunFolder.open(tmp_path / "run", {"a": 1}, log=said.append)
    assert "recovery_checkpoint.pt is damaged" in said[0] and not folder.has("recovery_checkpoint.pt")


def test_a_damaged_file_of_a_finished_run_reopens_it(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {"a": 1})
    folder.write_json("recoverability.json", {"blocks": {}})
    folder.write_json("report.json", {"done": True})
    folder.file("recoverability.json").write_text("{")
    RunFolder.open(tmp_path / "run", {"a": 1})
    assert not folder.is_complete and not folder.has("recoverability.json")


def test_ranks_other_than_0_never_write_the_run_folder_except_their_partial_scores(tmp_path):
    from pipeline.run.context import PARTIAL_SCORES
    from pipeline.run.runfolder import FollowerRunFolder

    owner = RunFolder.open(tmp_path / "run", {"a": 1})
    follower = FollowerRunFolder(tmp_path / "run", PARTIAL_SCORES)
    assert follower.read_json("settings.json")["settings"] == {"a": 1}
    follower.write_json("recoverability.rank1.json", {"blocks": {}})
    assert (tmp_path / "run" / "recoverability.rank1.json").exists()
    for write in (lambda: follower.write_json("selection.json", {}), lambda: follower.write_text("report.md", ""),
                  lambda: follower.save_tensors("recovered_state_dict.pt", {}), follower.take_ownership):
        with pytest.raises(RuntimeError, match="only rank 0"):
            write()
    assert not (tmp_path / "run" / "selection.json").exists()
    owner.release()
