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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.invoke import FAST_RUN, TINY, invoke
from tests.conftest import ROOT, write_images


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
        main(["run", "--model", TINY, *FAST_RUN, "--data", str(data), "--backend", "torch", "--latency-budget", "0.9",
              "--out", str(out)])
    except SystemExit as exc:
        assert exc.code == 0
    finally:
        if previous is None:
            os.environ.pop("PRACTISE_HOME", None)
        else:
            os.environ["PRACTISE_HOME"] = previous
    assert (out / "report.json").exists()
    return {"out": out, "data": data, "hash": _tree_hash(out)}


def test_corrupt_images_are_skipped_and_reported(capsys, tmp_path):
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


def _start_and_stop_when(cmd, env, path: Path, sig: int, timeout: float = 300) -> subprocess.Popen:
    # A shell's background jobs inherit SIGINT as ignored; give the child the default, as a terminal would.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run ended before {path.name} appeared: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


def _long_recovery_run(tmp_path: Path, out: Path) -> list[str]:
    """Arguments of a run whose recovery lasts long enough to be interrupted after its first checkpoint."""
    data = write_images(tmp_path / "data", 12)
    return ["run", "--model", TINY, "--resolution", "32", "--allow-random-weights", "--scoring-steps", "3",
            "--recovery-steps", "600", "--batch-size", "4", "--recovery", "mimic", "--data", str(data),
            "--backend", "torch", "--latency-budget", "0.9", "--out", str(out)]


def test_killed_during_finetuning_resumes_from_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = _long_recovery_run(tmp_path, out)
    env = _env(tmp_path / "home")
    killed = _start_and_stop_when(_cli(*args, home=tmp_path), env, out / "recovery_checkpoint.pt", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    for name in ("latency_table.json", "recoverability.json", "selection.json"):
        json.loads((out / name).read_text())  # finished stages are whole files
    assert not (out / "report.json").exists()
    resumed = subprocess.run(_cli(*args, home=tmp_path), cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming recovery from its checkpoint at step" in resumed.stderr
    assert "profiling" not in resumed.stderr and "scoring" not in resumed.stderr
    assert len(json.loads((out / "recovery.json").read_text())["losses"]) == 600
    assert not (out / "recovery_checkpoint.pt").exists()
    assert not [p for p in out.iterdir() if p.name.endswith((".partial", ".tmp"))]


def test_ctrl_c_stops_cleanly_and_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    args = _long_recovery_run(tmp_path, out)
    env = _env(tmp_path / "home")
    stopped = _start_and_stop_when(_cli(*args, home=tmp_path), env, out / "recovery_checkpoint.pt", signal.SIGINT)
    err = stopped.stderr.read()
    assert stopped.returncode == 130
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err


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


def test_two_profile_processes_at_once_lose_no_table(tmp_path):
    env = _env(tmp_path / "home")
    procs = [
        subprocess.Popen(_cli("profile", "--model", TINY, "--resolution", str(res), "--backend", "torch",
                              "--profile-time-cap", "10", home=tmp_path),  # the store is under test, not the timing
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for res in (32, 40)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    tables = sorted((tmp_path / "home" / "tables").glob("*.json"))
    assert len(tables) == 2
    for path in tables:
        assert json.loads(path.read_text())["savings"]  # whole files, never half-written
