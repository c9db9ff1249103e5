"""benchmarks/gpu_session.py on a machine without a GPU: one line, exit 0, nothing written; and its pure parts."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_session


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the machine without a GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    assert gpu_session.main([], results=tmp_path) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA GPU" in out
    assert list(tmp_path.iterdir()) == []


def test_the_session_runs_tests_then_torch_at_both_budgets_then_both_latency_model_checks(tmp_path):
    plan = gpu_session.steps(["torch", "inductor", "tensorrt"], tmp_path)
    titles = [s.title for s in plan]
    assert titles[:5] == ["gpu tests", "run --backend torch --latency-budget 0.78",
                          "run --backend torch --latency-budget 0.5", "latency model check (eager)",
                          "latency model check (CUDA graphs)"]
    assert titles[5:] == [f"run --backend {b} --latency-budget {x}" for b in ("inductor", "tensorrt")
                          for x in ("0.78", "0.5")]
    assert "--cuda-graphs" in plan[4].command and "--cuda-graphs" not in plan[3].command
    assert all("--profile-time-cap" in s.command for s in plan if s.title.startswith("run"))


def test_steps_that_no_longer_fit_the_eight_minutes_are_not_started(tmp_path):
    now = [0.0]
    ran = []

    def fake_run(step):  # each step uses its whole cap
        ran.append((step.title, step.cap_s))
        now[0] += step.cap_s
        return gpu_session.Outcome(step, 0, step.cap_s, "")

    plan = gpu_session.steps(["torch", "inductor", "tensorrt"], tmp_path)
    outcomes = gpu_session.run_all(plan, 480, fake_run, lambda: now[0])
    assert now[0] <= 480 and len(outcomes) == len(plan)
    assert [t for t, _ in ran][:5] == [s.title for s in plan[:5]]  # the priority steps all ran
    skipped = [o for o in outcomes if o.returncode is None]
    assert skipped and all(o.tail == "not run: out of session time" for o in skipped)
    assert all(cap >= gpu_session.MIN_STEP_S for _, cap in ran)  # no step is started with too little time left


def test_device_names_become_file_words_and_surveys_become_rows(tmp_path):
    assert gpu_session.device_slug("NVIDIA H100 80GB HBM3") == "h100"
    assert gpu_session.device_slug("NVIDIA A10G") == "a10g"
    run = tmp_path / "torch-0.78"
    run.mkdir()
    (run / "precisions.json").write_text(json.dumps({"options": [
        {"precision": "fp32", "latency_ratio": 1.0, "agreement": 1.0, "kept": True, "reason": "the reference"},
        {"precision": "fp16", "latency_ratio": 0.41, "agreement": 1.0, "kept": True, "reason": "faster"}]}))
    (run / "dropped_blocks.json").write_text(json.dumps({"precision": "fp16", "dropped": []}))
    rows = gpu_session.survey_rows(tmp_path)
    assert len(rows) == 2 and "| fp16 | 0.410 | 100.0% | kept: faster | fp16 0 |" in rows[1]
