"""Bad input, interruptions and failures: one clear line, the right exit code, nothing lost."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.invoke import FAST_RUN, TINY, invoke
from tests.conftest import ROOT, with_even_savings, write_images


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished run whose files must survive everything the other tests throw at the CLI."""
    from pipeline.cli import main

    root = tmp_path_factory.mktemp("finished")
    data = write_images(root / "data", 12)
    out = root / "run"
    previous = os.environ.get("PRACTISE_HOME")
    os.environ["PRACTISE_HOME"] = str(root / "home")
    try:
        with pytest.MonkeyPatch.context() as patch:
            with_even_savings(patch)  # the run is under test, not this machine's timing
            main(["run", "--model", TINY, *FAST_RUN, "--data", str(data), "--backend", "torch", "--latency-budget",
                  "0.9", "--out", str(out)])
    except SystemExit as exc:
        assert exc.code == 0
    finally:
        if previous is None:
            os.environ.pop("PRACTISE_HOME", None)
        else:
            os.environ["PRACTISE_HOME"] = previous
    assert (out / "report.json").exists()
    return {"out": out, "data": data, "hash": _tree_hash(out)}


def test_corrupt_images_are_skipped_and_reported(capsys, tmp_path, even_savings):
    data = write_images(tmp_path / "data", 10)
    (data / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (data / "readme.txt").write_text("not an image")
    out = tmp_path / "run"
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(data), "--backend", "torch",
                          "--latency-budget", "0.9", "--out", str(out))
    assert code == 0, err
    skipped = json.loads((out / "data.json").read_text())["tiny_set"]["skipped"]
    assert skipped == {"not an image file": 1, "unreadable": 1}
    assert "Skipped files in the tiny set" in (out / "report.md").read_text()


def _cli(*args, home: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def _env(home: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), PRACTISE_HOME=str(home), PYTHONUNBUFFERED="1")


def _start_and_stop_when(cmd, env, ready, sig: int, timeout: float = 600) -> subprocess.Popen:
    """Start `cmd`, send it `sig` once `ready()` holds, and wait for it to end."""
    # A shell's background jobs inherit SIGINT as ignored; give the child the default, as a terminal would.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run ended before it was ready to be stopped: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


def _checkpoint_step(out: Path) -> int | None:
    """The last step the recovery checkpoint holds (None while there is none)."""
    try:
        return torch.load(out / "recovery_checkpoint.pt", weights_only=True)["step"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return None


# recovery checkpoints every 20 steps; the test stops the run after the first and the second checkpoint, so
# 240 steps leave 200 for the signals to land in (600 cost 20 s more and 160 s under two pytest workers)
RECOVERY_STEPS = 240


def _long_recovery_run(tmp_path: Path, out: Path) -> list[str]:
    """Arguments of a run whose recovery lasts long enough to be interrupted after its first checkpoints."""
    data = write_images(tmp_path / "data", 12)
    return ["run", "--model", TINY, "--resolution", "32", "--allow-random-weights", "--scoring-steps", "3",
            "--recovery-steps", str(RECOVERY_STEPS), "--batch-size", "4", "--recovery", "mimic", "--data", str(data),
            "--backend", "torch", "--profile-time-cap", "1", "--latency-budget", "0.9", "--out", str(out)]


# written before recovery and never again on a resumed run (data.json is rewritten by every run: not a stage)
_FINISHED_BEFORE_RECOVERY = ("latency_table.json", "recoverability.json", "selection.json")


def _finished_stages(out: Path) -> dict[str, int]:
    """The stage files written before recovery, each checked whole, with their modification times."""
    for name in _FINISHED_BEFORE_RECOVERY:
        json.loads((out / name).read_text())
    return {name: (out / name).stat().st_mtime_ns for name in _FINISHED_BEFORE_RECOVERY}


def test_ctrl_c_stops_cleanly_and_a_kill_loses_nothing_each_rerun_resuming_from_the_latest_checkpoint(tmp_path):
    """Ctrl-C in recovery, then the same command killed (SIGKILL) once it has checkpointed further, then the same
    command to the end: each rerun resumes from the last checkpoint and redoes no finished stage."""
    out = tmp_path / "run"
    args = _long_recovery_run(tmp_path, out)
    env = _env(tmp_path / "home")
    stopped = _start_and_stop_when(_cli(*args, home=tmp_path), env, lambda: _checkpoint_step(out) is not None,
                                   signal.SIGINT)
    err = stopped.stderr.read()
    assert stopped.returncode == 130
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    finished, first = _finished_stages(out), _checkpoint_step(out)
    killed = _start_and_stop_when(_cli(*args, home=tmp_path), env, lambda: (_checkpoint_step(out) or 0) > first,
                                  signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert f"resuming recovery from its checkpoint at step {first + 1} of {RECOVERY_STEPS}" in killed.stderr.read()
    second = _checkpoint_step(out)
    assert not (out / "report.json").exists()
    resumed = subprocess.run(_cli(*args, home=tmp_path), cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming recovery from its checkpoint at step {second + 1} of {RECOVERY_STEPS}" in resumed.stderr
    assert "profiling" not in resumed.stderr and "scoring" not in resumed.stderr
    assert _finished_stages(out) == finished  # not one finished stage file written again
    assert len(json.loads((out / "recovery.json").read_text())["losses"]) == RECOVERY_STEPS
    assert (out / "report.json").exists() and not (out / "recovery_checkpoint.pt").exists()
    assert not [p for p in out.iterdir() if p.name.endswith((".partial", ".tmp")) or ".partial." in p.name]


_safe_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=12)


@st.composite
def malformed_invocations(draw, tmp: Path, finished: Path, data: Path):
    junk = tmp / f"junk_{draw(st.integers(0, 10**9))}"
    junk.mkdir(parents=True, exist_ok=True)
    blob = draw(st.binary(min_size=0, max_size=64))
    bad_file = junk / draw(st.sampled_from(["w.pt", "t.json", "x.png", "m.pth"]))
    bad_file.write_bytes(blob)
    bad_images = junk / "imgs"
    bad_images.mkdir(exist_ok=True)
    (bad_images / "a.jpg").write_bytes(blob)
    kind = draw(st.sampled_from(["model", "weights", "budget", "data", "table", "out", "evaluate", "resolution"]))
    base = ["run", "--model", TINY, "--resolution", "32", "--allow-random-weights", "--backend", "torch",
            "--data", str(data), "--out", str(finished)]
    if kind == "model":
        return ["blocks", "--model", "m_" + draw(_safe_text)]
    if kind == "weights":
        return ["blocks", "--model", TINY, "--weights", str(bad_file)]
    if kind == "budget":
        budget = draw(st.one_of(_safe_text, st.floats(allow_nan=True).map(str)))
        return base[:-2] + ["--out", str(junk / "run"), "--latency-budget", budget, "--data", str(bad_images)]
    if kind == "data":
        return base[:-2] + ["--out", str(junk / "run"), "--data", str(bad_images)]
    if kind == "table":
        return ["tables", "show", str(bad_file)]
    if kind == "out":  # a finished run with other settings
        return base + ["--latency-budget", draw(st.sampled_from(["0.5", "0.7", "0.95"]))]
    if kind == "evaluate":
        return ["evaluate", str(junk), "--data", str(bad_images)]
    return ["blocks", "--model", TINY, "--resolution", draw(st.sampled_from(["-3", "0", "abc", "1e9", ""]))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_malformed_input_gets_a_clean_error_and_earlier_runs_stay_intact(data, capsys, finished_run, tmp_path):
    args = data.draw(malformed_invocations(tmp_path, finished_run["out"], finished_run["data"]))
    code, _, err = invoke(capsys, *args)
    assert code in (1, 2), (args, err)
    assert "Traceback" not in err and "internal error" not in err, (args, err)
    assert err.strip(), args
    assert _tree_hash(finished_run["out"]) == finished_run["hash"]


def test_two_profile_processes_for_the_same_table_at_once_leave_one_whole_table(tmp_path):
    """Both write the same table key (same network, device and settings): the store ends with one whole table
    (tests/profilers/test_table.py shows the same check failing for a store without its lock and atomic write)."""
    env = _env(tmp_path / "home")
    procs = [
        subprocess.Popen(_cli("profile", "--model", TINY, "--resolution", "32", "--backend", "torch",
                              "--profile-time-cap", "1", home=tmp_path),  # the store is under test, not the timing
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    files = sorted(p.name for p in (tmp_path / "home" / "tables").iterdir() if not p.name.startswith(".lock"))
    assert len(files) == 1 and files[0].endswith(".json"), files  # one key, no temporary file left
    table = json.loads((tmp_path / "home" / "tables" / files[0]).read_text())
    assert set(table["savings"]) == {"layers.0.0", "layers.0.1", "layers.1.1", "layers.2.1"}
