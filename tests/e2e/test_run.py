"""Whole runs through the CLI, in-process and once as a subprocess: folders, resume, deployment."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke
from tests.conftest import ROOT, write_images


@pytest.mark.gpu
def test_a_gpu_run_profiles_trains_and_measures_on_the_gpu(capsys, image_folder, labelled_folder, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--val",
                               str(labelled_folder), "--target", "gpu", "--backend", "torch", "--latency-budget",
                               "0.95", "--out", str(out))
    assert code == 0, err
    assert "training on cuda" in err
    assert json.loads((out / "recovery.json").read_text())["train_device"] == "cuda"
    assert json.loads((out / "recoverability.json").read_text())["train_device"] == "cuda"
    report = json.loads((out / "report.json").read_text())
    assert report["latency"]["device"]["device_kind"] == "gpu" and report["latency"]["measured_ratio"] is not None
    assert report["export"]["onnx"]["check"]["passed"]
    # the saved networks hold CPU tensors: they load on a machine without the GPU
    import torch

    state = torch.load(out / "compressed_state_dict.pt", map_location=None, weights_only=True)
    assert all(t.device.type == "cpu" for t in state.values())


def test_full_run_in_process_writes_its_folder_and_resumes(capsys, image_folder, labelled_folder, tmp_path,
                                                           even_savings):
    out = tmp_path / "run"
    args = ["run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--val", str(labelled_folder),
            "--backend", "torch", "--latency-budget", "0.9", "--out", str(out)]
    code, stdout, err = invoke(capsys, *args)
    assert code == 0, err
    assert "latency ratio: predicted" in stdout and "verdict:" in stdout
    for name in ("settings.json", "latency_table.json", "recoverability.json", "selection.json", "recovery.json",
                 "evaluation.json", "compressed_state_dict.pt", "dropped_blocks.json", "model.onnx", "export.json",
                 "report.json", "report.md", "candidates.json", "data.json", "training_layout.json"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["latency"]["measured_ratio"] is not None
    assert report["selection"]["dropped"]
    assert report["evaluation"]["report"]["images"] == 9  # the validation folder
    assert report["evaluation"]["report"]["recovered"]["student_top1"] is not None  # labels were used
    evaluation = report["evaluation"]
    assert evaluation["candidates"] == ["unrecovered", "recovered"]  # no blend unless asked for
    best = max(evaluation["report"][n]["top1_agreement"] for n in evaluation["candidates"])
    assert evaluation["report"][evaluation["deployed"]]["top1_agreement"] == best
    assert report["export"]["onnx"]["check"]["passed"]
    assert "Recovery on held-out images" in (out / "report.md").read_text()
    assert "come from the tiny set itself" not in (out / "report.md").read_text()  # --val was given

    # the same command again: nothing is redone or overwritten
    before = (out / "report.json").stat().st_mtime_ns
    code, _, err = invoke(capsys, *args)
    assert code == 0 and "already holds a finished run" in err
    assert (out / "report.json").stat().st_mtime_ns == before

    # other settings into the same folder are refused, leaving it intact
    code, _, err = invoke(capsys, *[a if a != "0.9" else "0.95" for a in args])
    assert_clean_error(code, err, 2, "holds a run with other settings")
    assert (out / "report.json").stat().st_mtime_ns == before

    # evaluate: accuracy on a labelled folder and agreement with the original
    code, _, err = invoke(capsys, "evaluate", str(out), "--data", str(labelled_folder), "--json")
    assert_clean_error(code, err, 2, "--trust-model-code")  # the folder names user code: not run unasked
    code, stdout, _ = invoke(capsys, "evaluate", str(out), "--data", str(labelled_folder), "--json",
                             "--trust-model-code")
    assert code == 0
    result = json.loads(stdout)
    assert result["labelled"] and result["networks"]["compressed"]["top1_agreement"] is not None
    assert result["networks"]["original"]["top1"] is not None


def test_interrupted_run_resumes_from_the_last_finished_stage(capsys, image_folder, tmp_path, even_savings):
    out = tmp_path / "run"
    args = ["run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
            "--latency-budget", "0.9", "--out", str(out)]
    assert invoke(capsys, *args)[0] == 0
    # simulate a kill after selection: remove every later stage's output
    for name in ("recovery.json", "recovered_state_dict.pt", "compressed_state_dict.pt", "evaluation.json",
                 "export.json", "model.onnx", "report.json", "report.md"):
        (out / name).unlink()
    table_mtime = (out / "latency_table.json").stat().st_mtime_ns
    code, stdout, err = invoke(capsys, *args)
    assert code == 0, err
    assert "profiling" not in err and "scoring" not in err  # finished stages were not redone
    assert (out / "latency_table.json").stat().st_mtime_ns == table_mtime
    assert (out / "report.json").exists()
    # without --val the report images come from the tiny set, and the run says what that means
    assert "pass --val with a few deployment images" in stdout
    assert "These report images come from the tiny set itself" in (out / "report.md").read_text()


def test_reprofile_measures_a_run_folders_table_again_unless_blocks_were_chosen_with_it(capsys, image_folder,
                                                                                         tmp_path, even_savings):
    out = tmp_path / "run"
    args = ["run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
            "--latency-budget", "0.9", "--out", str(out), "--export", "onnx"]
    assert invoke(capsys, *args)[0] == 0
    later = ("recoverability.json", "selection.json", "recovery.json", "recovered_state_dict.pt",
             "compressed_state_dict.pt", "evaluation.json", "export.json", "model.onnx", "report.json", "report.md")

    def interrupt_after_the_table():
        for name in later:
            (out / name).unlink(missing_ok=True)

    interrupt_after_the_table()  # a table made without --reprofile (say on a busy machine), nothing chosen yet
    code, _, err = invoke(capsys, *args, "--reprofile")
    assert code == 0, err
    assert "measuring again" in err and "profiling" in err
    assert json.loads((out / "latency_table.json").read_text())["reprofiled"] is True
    interrupt_after_the_table()  # an interrupted --reprofile run resumes with the table it measured
    code, _, err = invoke(capsys, *args, "--reprofile")
    assert code == 0, err
    assert "measuring again" not in err and "profiling" not in err
    (out / "report.json").unlink()  # blocks already chosen with the table: refused, nothing changed
    (out / "latency_table.json").write_text(json.dumps(
        {**json.loads((out / "latency_table.json").read_text()), "reprofiled": False}))
    code, _, err = invoke(capsys, *args, "--reprofile")
    assert_clean_error(code, err, 2, "already selected blocks with its latency table")
    assert (out / "selection.json").exists() and (out / "latency_table.json").exists()


def test_console_script_runs_end_to_end_with_onnxruntime(tmp_path):
    data = write_images(tmp_path / "data", 12)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--model", TINY, *FAST_RUN, "--data", str(data),
           "--latency-budget", "0.9", "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["latency"]["device"]["backend"] == "onnxruntime-cpu"
    assert report["evaluation"]["report_source"] == "held-out part of the tiny set"
    # the table went to the store and is listed
    listed = subprocess.run([sys.executable, "-m", "pipeline.cli", "tables", "list"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert "tiny_resnet" in listed.stdout


def test_a_table_from_another_device_selects_without_measuring_here(capsys, image_folder, tmp_path, even_savings):
    code, out, err = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch",
                            "--profile-time-cap", "1")
    assert code == 0, err
    stored = Path(out.strip().splitlines()[-1].split("table: ")[1].split(" (")[0])
    table = json.loads(stored.read_text())
    table["fingerprint"]["device_name"] = "Jetson Orin (deployment device)"
    foreign = tmp_path / "orin.json"
    foreign.write_text(json.dumps(table))
    run_dir = tmp_path / "run"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend",
                               "torch", "--latency-budget", "0.9", "--latency-table", str(foreign), "--out", str(run_dir))
    assert code == 0, err
    assert "the latency table's device is not this one" in err
    report = json.loads((run_dir / "report.json").read_text())
    assert report["latency"]["table_source"] == "file"
    assert report["latency"]["device"]["device_name"] == "Jetson Orin (deployment device)"
    assert report["latency"]["measured_ratio"] is None and report["latency"]["meets_budget"] is None
    assert "not measured on this machine" in (run_dir / "report.md").read_text()


def test_a_gpu_table_selects_on_a_machine_without_the_gpu(capsys, image_folder, tmp_path, even_savings):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out, err = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch",
                            "--profile-time-cap", "1")
    stored = Path(out.strip().splitlines()[-1].split("table: ")[1].split(" (")[0])
    table = json.loads(stored.read_text())
    table["fingerprint"].update(device_name="NVIDIA L4", device_kind="gpu", compute_capability="8.9",
                                backend="tensorrt", backend_version="10.13.0.35", precision="fp16")
    foreign = tmp_path / "l4.json"
    foreign.write_text(json.dumps(table))
    run_dir = tmp_path / "run"
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--target", "gpu",
                          "--precision", "fp16", "--latency-budget", "0.9", "--latency-table", str(foreign),
                          "--out", str(run_dir))
    assert code == 0, err
    assert "cannot be measured here" in err and "needs a CUDA GPU" in err
    report = json.loads((run_dir / "report.json").read_text())
    assert report["latency"]["device"]["device_name"] == "NVIDIA L4" and report["latency"]["measured_ratio"] is None
    assert report["export"]["onnx"]["latency"] == {"measured": False, "reason": "the target device is not present here"}
    # without a table, the same target stops before any work
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--target", "gpu",
                          "--out", str(tmp_path / "run2"))
    assert_clean_error(code, err, 2, "needs a CUDA GPU")
    assert not (tmp_path / "run2").exists()


def test_a_recovery_that_hurts_held_out_agreement_is_not_deployed(capsys, monkeypatch, image_folder, labelled_folder,
                                                                   tmp_path, even_savings):
    """Recovery returns a state that looks better to it but scrambles the network: the run must keep the other."""
    import torch

    import pipeline.run.stages as run_module
    from pipeline.recovery.recover import RecoveryResult

    def harmful_recover(teacher, student, *args, **kwargs):
        state = {k: (v + torch.randn_like(v) * 3 if v.is_floating_point() else v)
                 for k, v in student.state_dict().items()}
        return RecoveryResult(state, "recovered", 4, 1.0, 0.5, [1.0] * 4, [])

    monkeypatch.setattr(run_module, "recover", harmful_recover)
    out = tmp_path / "run"
    code, stdout, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--val",
                               str(labelled_folder), "--backend", "torch", "--latency-budget", "0.9", "--out", str(out),
                               "--export", "onnx", "--recovery-points", "0.5", "--recovery-mixing", "cutmix",
                               "--recovery-synthetic", "4", "--recovery-views", "confident")
    assert code == 0, err
    settings = json.loads((out / "recovery.json").read_text())["settings"]
    assert (settings["point_weight"], settings["mixing"]) == (0.5, "cutmix")  # the options reach recovery
    assert settings["synthetic"]["images"] == 4 and settings["views"]["source"] == "confident"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["deployed"] == "unrecovered"
    assert "UNRECOVERED network was kept" in evaluation["verdict"] and "deployed network: unrecovered" in stdout
    assert "blend" not in evaluation["verdict"]  # none was offered
    deployed = torch.load(out / "compressed_state_dict.pt", weights_only=True)
    recovered = torch.load(out / "recovered_state_dict.pt", weights_only=True)
    from pipeline.models import load_model
    from pipeline.network.surgery import drop_blocks

    dropped = json.loads((out / "dropped_blocks.json").read_text())["dropped"]
    unrecovered = drop_blocks(load_model(TINY, None, 32).module, dropped).state_dict()
    assert all(torch.equal(deployed[k], unrecovered[k]) for k in unrecovered)  # exactly: copied weights, no arithmetic
    assert any(not torch.equal(recovered[k], unrecovered[k]) for k in unrecovered)


def test_a_deployed_blend_is_what_the_run_saves_and_exports_and_blends_are_off_by_default(
        capsys, monkeypatch, image_folder, labelled_folder, tmp_path, even_savings):
    import torch

    import pipeline.run.deployment as deployment
    import pipeline.run.stages as run_module
    from pipeline.recovery.recover import RecoveryResult, blended_state

    def nudging_recover(teacher, student, *args, **kwargs):
        generator = torch.Generator().manual_seed(0)
        state = {k: (v + 0.01 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v)
                 for k, v in student.state_dict().items()}
        return RecoveryResult(state, "recovered", 4, 1.0, 0.5, [1.0] * 4, [])

    monkeypatch.setattr(run_module, "recover", nudging_recover)
    monkeypatch.setattr(deployment, "_best_candidate", lambda report: "halfway" if "halfway" in report else "recovered")
    args = ["run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--val", str(labelled_folder),
            "--backend", "torch", "--latency-budget", "0.9", "--export", "onnx"]
    out = tmp_path / "blend"
    code, stdout, err = invoke(capsys, *args, "--recovery-blends", "0.5", "--out", str(out))
    assert code == 0, err
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["candidates"] == ["unrecovered", "halfway", "recovered"]
    assert evaluation["deployed"] == "halfway" and "deployed network: halfway" in stdout
    assert "halfway blend" in evaluation["verdict"] and "| halfway |" in (out / "report.md").read_text()
    from pipeline.models import load_model
    from pipeline.network.surgery import drop_blocks

    dropped = json.loads((out / "dropped_blocks.json").read_text())["dropped"]
    unrecovered = drop_blocks(load_model(TINY, None, 32).module, dropped).state_dict()
    recovered = torch.load(out / "recovered_state_dict.pt", weights_only=True)
    deployed = torch.load(out / "compressed_state_dict.pt", weights_only=True)
    expected = blended_state(unrecovered, recovered, 0.5)
    assert all(torch.allclose(deployed[k].float(), expected[k].float()) for k in expected)
    assert any(not torch.allclose(deployed[k].float(), recovered[k].float()) for k in expected)
    assert json.loads((out / "export.json").read_text())["onnx"]["check"]["passed"]  # the blend is exported

    code, stdout, err = invoke(capsys, *args, "--out", str(tmp_path / "two"))  # the default: no blend
    assert code == 0, err
    evaluation = json.loads((tmp_path / "two" / "evaluation.json").read_text())
    assert evaluation["candidates"] == ["unrecovered", "recovered"]
