"""`torchrun --nproc_per_node 2 -m pipeline run` as users launch it (gloo on this CPU): the ranks score, select
and recover like one process; a rank that dies stops the run with one line, and one process resumes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.cli.invoke import TINY
from tests.conftest import ROOT
from tests.recorded_tables import fingerprint
from tests.records import assert_records_close

SETTINGS = {"model": TINY, "resolution": 32, "allow_random_weights": True, "scoring_steps": 3, "recovery_steps": 4,
            "batch_size": 4, "precision": "fp16", "budget": "0.9", "target": "gpu", "train_device": "cpu"}
# a GPU table (as in tests/e2e/test_run.py): nothing is timed here, so no rank waits on a measurement

# Floats the two runs compute (scores, losses) are compared within rel 1e-6, their decisions exactly. Each run
# times its own training layout (training_layout.json: channels-last or contiguous, whichever ran faster just
# then, so a loaded machine can flip it), and the layouts round float32 differently: the 1.5223225240e-4
# (two ranks, contiguous) against 1.5223224182e-4 (one process, channels-last), at most 1.1e-7 relative over
# recoverability.json with the layout forced each way. 1e-6 leaves ~9x that; the gradient averaging the test
# checks moves the second recovery loss by ~3.5e-5 relative, far outside it.
ACROSS_PROCESSES = {"rel": 1e-6, "abs": 1e-12}


def _cli_args(settings: dict) -> list[str]:
    args = []
    for key, value in settings.items():
        flag = "--" + {"budget": "latency-budget", "data": "data", "latency_table": "latency-table"}.get(
            key, key.replace("_", "-"))
        args += [flag] if value is True else [flag, str(value)]
    return args


def _gpu_table(tmp_path: Path) -> Path:
    """A latency table as a TensorRT profiler on another machine recorded it for the tiny ResNet."""
    from pipeline.models import load_model
    from pipeline.network.blocks import analyse
    from profilers.stats import summarize
    from profilers.table import LatencyTable

    loaded = load_model(TINY, None, 32)
    blocks = analyse(loaded.module, 32).candidate_names()
    table = LatencyTable(loaded.spec, loaded.architecture_hash(),
                         fingerprint(device_name="NVIDIA L4", device_kind="gpu", compute_capability="8.9",
                                     backend="tensorrt", backend_version="10.13.0.35", precision="fp16", resolution=32),
                         summarize([4.0, 4.1, 3.9]), {b: summarize([0.48, 0.5, 0.49]) for b in blocks}, {"rounds": 3},
                         "2026-11-25T00:00:00Z")
    path = tmp_path / "l4.json"
    path.write_text(json.dumps(table.to_dict()))
    return path


@pytest.fixture
def settings(tmp_path, image_folder) -> dict:
    return {**SETTINGS, "data": str(image_folder), "latency_table": str(_gpu_table(tmp_path))}


def _torchrun(ranks: int, args: list[str], module: str = "pipeline") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # PRACTISE_HOME: the isolated home
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               "-m", module, "run", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _one_process(settings: dict, out: Path, monkeypatch) -> None:
    """The same run in this process, up to recovery (evaluation and export are rank 0's anyway)."""
    from pipeline.run import runner
    from pipeline.run.config import RunConfig

    torch.set_num_threads(1)  # as each rank: the same arithmetic, bit for bit
    monkeypatch.setattr(runner, "_finish", lambda ctx: None)
    runner.run(RunConfig(**settings, out=str(out)))


def _read(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


@pytest.mark.slow
def test_two_ranks_score_select_and_recover_as_one_process_does(settings, tmp_path, monkeypatch):
    ranks = tmp_path / "two"
    done = _torchrun(2, [*_cli_args(settings), "--json", "--out", str(ranks)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.strip().splitlines()) == 1 and json.loads(done.stdout)["run_dir"] == str(ranks)  # rank 0's
    assert "rank 0/2: distributed run over 2 processes (gloo, training on cpu)" in done.stderr
    assert "rank 1/2: waiting for rank 0: latency table and precisions (profiling is not distributed" in done.stderr
    assert "rank 1/2: scoring 2 of the 4 blocks left" in done.stderr  # cost-balanced: 2 + 2 on the tiny ResNet
    assert (ranks / "report.json").exists() and not list(ranks.glob("recoverability.rank*.json"))
    assert not (ranks / ".owner.json").exists()  # rank 0 handed the folder back

    single = tmp_path / "one"
    _one_process(settings, single, monkeypatch)
    scored, selected = _read(ranks, "recoverability.json")["blocks"], _read(single, "recoverability.json")["blocks"]
    assert list(scored) == list(selected)  # every block scored, in the same order
    assert_records_close(scored, selected, **ACROSS_PROCESSES)  # adaptor sites exactly, scores within rounding
    assert _read(ranks, "selection.json")["dropped"] == _read(single, "selection.json")["dropped"]  # exactly
    # and the whole selection: plans, precision, the chosen plan and why, exactly; its scores within rounding
    assert_records_close(_read(ranks, "selection.json"), _read(single, "selection.json"), **ACROSS_PROCESSES)
    two, one = _read(ranks, "recovery.json"), _read(single, "recovery.json")
    assert (two["ranks"], two["batch_per_rank"], two["effective_batch"]) == (2, 4, 8) and "ranks" not in one
    assert two["losses"][0] == pytest.approx(one["losses"][0], **ACROSS_PROCESSES)  # rank 0 draws one process's views
    # then steps on gradients averaged with rank 1's other views: a difference beyond rounding
    assert two["losses"][1] != pytest.approx(one["losses"][1], **ACROSS_PROCESSES)
    assert len(two["checks"]) == len(one["checks"])


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_run_with_one_line_and_one_process_resumes_it(settings, tmp_path, monkeypatch):
    out = tmp_path / "run"
    stopped = _torchrun(2, [*_cli_args(settings), "--out", str(out)], module="tests.e2e.distributed_fault")
    assert stopped.returncode != 0
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stopped.stderr[-3000:]
    assert errors[0].startswith("error: rank 0/2: ") and "rerun the same command, with any number of processes" in errors[0]
    saved = {**_read(out, "recoverability.rank1.json")["blocks"]}
    if (out / "recoverability.json").exists():
        saved |= _read(out, "recoverability.json")["blocks"]
    assert 1 <= len(saved) < 4 and not (out / "selection.json").exists()

    from pipeline.recovery import recoverability

    scored, real = [], recoverability.recoverability_of
    monkeypatch.setattr(recoverability, "recoverability_of", lambda block, *a, **k: scored.append(block) or real(block, *a, **k))
    _one_process(settings, out, monkeypatch)
    final = _read(out, "recoverability.json")["blocks"]
    assert sorted(scored) == sorted(set(final) - set(saved))  # what the ranks saved was read, not redone
    assert all(final[b] == saved[b] for b in saved)  # exactly: the ranks' records read back, not computed again
    assert not list(out.glob("recoverability.rank*.json")) and (out / "recovery.json").exists()


@pytest.mark.gpu
def test_nccl_ranks_each_train_on_their_own_gpu(settings, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip(f"NCCL needs one GPU per rank; this machine has {torch.cuda.device_count()}")
    out = tmp_path / "run"
    done = _torchrun(2, [*_cli_args({**settings, "train_device": "cuda"}), "--out", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed run over 2 processes (nccl, training on cuda)" in done.stderr
    recovery = _read(out, "recovery.json")
    assert recovery["train_device"] == "cuda" and recovery["ranks"] == 2
    assert _read(out, "recoverability.json")["train_device"] == "cuda"
