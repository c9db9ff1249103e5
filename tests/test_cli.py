"""The CLI driven in-process (through main(), as the console script is) and once as a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.conftest import ROOT, write_images

TINY = "tests.tiny_models:tiny_resnet"
FAST_RUN = ["--resolution", "32", "--allow-random-weights", "--scoring-steps", "3", "--recovery-steps", "4",
            "--batch-size", "4", "--profile-time-cap", "5"]


def invoke(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err, expected_code, fragment):
    assert code == expected_code
    assert fragment in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_blocks_lists_candidates_as_json(capsys):
    code, out, _ = invoke(capsys, "blocks", "--model", TINY, "--resolution", "32", "--json")
    assert code == 0
    data = json.loads(out)
    assert [c["name"] for c in data["candidates"]] == ["layers.0.0", "layers.0.1", "layers.1.1", "layers.2.1"]
    assert all(c["macs"] > 0 and c["params"] > 0 for c in data["candidates"])


@pytest.mark.parametrize("args,fragment", [
    (["blocks", "--model", "resnet_19"], "unknown model 'resnet_19'"),
    (["blocks", "--model", TINY, "--weights", "/no/such/file.pt"], "does not exist"),
    (["run", "--model", TINY, "--latency-budget", "1.5"], "outside (0, 1]"),
    (["run", "--model", TINY, "--latency-budget", "fast please"], "not understood"),
    (["run", "--model", "mobilenet_v2"], "has no trained weights"),
    (["run", "--model", TINY, "--allow-random-weights", "--data", "/no/such/folder"], "does not exist"),
    (["run", "--model", TINY, "--allow-random-weights", "--backend", "tensorflow"], "not available for target 'cpu'"),
    (["run", "--model", TINY, "--allow-random-weights", "--recovery-blends", "1.5"], "--recovery-blends '1.5' is not"),
    (["run", "--model", TINY, "--allow-random-weights", "--recovery-blends", "half"], "strictly between 0 and 1"),
])
def test_bad_input_gets_one_line_and_exit_code_2(capsys, args, fragment):
    code, _, err = invoke(capsys, *args)
    assert_clean_error(code, err, 2, fragment)


def test_training_on_an_absent_gpu_is_refused_before_any_work(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--train-device", "cuda",
                          "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "--train-device cuda needs a CUDA GPU")
    assert not (tmp_path / "run").exists()


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


def test_synthetic_inputs_for_a_network_without_batchnorm_are_refused_before_any_work(capsys, image_folder,
                                                                                      tmp_path):
    code, _, err = invoke(capsys, "run", "--model", "tests.tiny_models:tiny_resnet_without_batchnorm", *FAST_RUN,
                          "--data", str(image_folder), "--recovery-synthetic", "8", "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "has no BatchNorm layer")
    assert not (tmp_path / "run").exists()


def test_unknown_target_is_rejected_by_the_parser(capsys):
    code, _, err = invoke(capsys, "run", "--target", "tpu")
    assert code == 2 and "tpu" in err and "Traceback" not in err


def test_empty_data_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(tmp_path / "empty"))
    assert_clean_error(code, err, 2, "too few usable images")


def test_unreachable_budget_names_the_best_ratio(capsys, image_folder, tmp_path):
    """With a recorded table (every block saves 5% of 4 ms), dropping all 4 blocks keeps 0.8 at best."""
    from pipeline.models import load_model
    from pipeline.network.blocks import analyse
    from profilers.stats import summarize
    from profilers.table import LatencyTable
    from tests.test_tables import fingerprint

    loaded = load_model(TINY, resolution=32)
    blocks = analyse(loaded.module, 32).candidate_names()
    table = LatencyTable(loaded.spec, loaded.architecture_hash(), fingerprint(device_name="Deployment CPU"),
                         summarize([4.0, 4.0, 4.0]), {b: summarize([0.2, 0.2, 0.2]) for b in blocks}, {},
                         "2026-11-25T00:00:00Z")
    table_file = tmp_path / "table.json"
    table_file.write_text(json.dumps(table.to_dict()))
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
                          "--latency-budget", "0.5", "--latency-table", str(table_file), "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "cannot be reached")
    assert "keep 0.800 of the original latency" in err and "Choose a budget of at least 0.80" in err


def test_full_run_in_process_writes_its_folder_and_resumes(capsys, image_folder, labelled_folder, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--val", str(labelled_folder),
            "--backend", "torch", "--latency-budget", "0.9", "--out", str(out)]
    code, stdout, err = invoke(capsys, *args)
    assert code == 0, err
    assert "latency ratio: predicted" in stdout and "verdict:" in stdout
    for name in ("settings.json", "latency_table.json", "recoverability.json", "selection.json", "recovery.json",
                 "evaluation.json", "compressed_state_dict.pt", "dropped_blocks.json", "model.onnx", "export.json",
                 "report.json", "report.md", "candidates.json", "data.json"):
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
    code, stdout, _ = invoke(capsys, "evaluate", str(out), "--data", str(labelled_folder), "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["labelled"] and result["networks"]["compressed"]["top1_agreement"] is not None
    assert result["networks"]["original"]["top1"] is not None


def test_interrupted_run_resumes_from_the_last_finished_stage(capsys, image_folder, tmp_path):
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
                                                                                         tmp_path):
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


def test_a_table_from_another_device_selects_without_measuring_here(capsys, image_folder, tmp_path):
    code, out, err = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch")
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


def test_a_gpu_table_selects_on_a_machine_without_the_gpu(capsys, image_folder, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out, err = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch")
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


def test_profile_validate_compares_predicted_and_measured_drops(capsys):
    code, out, err = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch",
                            "--validate", "2")
    assert code == 0, err
    assert "median |error|" in out
    validation = Path(out.strip().splitlines()[-2].split("validation: ")[1])
    data = json.loads(validation.read_text())
    assert len(data["checks"]) == 2
    for check in data["checks"]:
        assert len(check["dropped"]) >= 2 and 0 < check["measured_ratio"] < 1.5


def test_tables_export_and_import_move_a_table_between_machines(capsys, tmp_path, monkeypatch):
    code, out, _ = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch")
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


def test_export_command_adds_checked_artefacts_to_a_finished_run(capsys, image_folder, tmp_path):
    out = tmp_path / "run"
    assert invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
                  "--latency-budget", "0.9", "--out", str(out))[0] == 0
    code, stdout, err = invoke(capsys, "export", str(out), "--format", "torchscript", "--format", "onnx-int8",
                               "--format", "onnx", "--dynamic-batch")
    assert code == 0, err
    exported = json.loads((out / "export.json").read_text())
    assert set(exported) == {"onnx", "torchscript", "onnx-int8"}
    assert exported["torchscript"]["check"]["passed"]
    assert exported["onnx"]["input_shape"][0] == "batch" and exported["onnx"]["check"]["passed"]
    for fmt, art in exported.items():  # every artefact timed on the target beside the original
        latency = art["latency"]
        assert latency["measured"] and latency["artefact_ms"] > 0, (fmt, latency)
        assert latency["meets_budget"] == (latency["ratio"] <= latency["target_ratio"])
    assert stdout.count("latency: ") == 3 and "ratio" in stdout
    report = (out / "report.md").read_text()
    assert "model.torchscript.pt" in report and "model.int8.onnx" in report
    assert "latency on the target" in report and "target 0.900" in report
    code, _, err = invoke(capsys, "export", str(out), "--format", "tensorrt")
    assert_clean_error(code, err, 2, "TensorRT is not installed")
    # a run trained on a GPU exports on a machine without one: exporting does not train
    from pipeline.run.runfolder import settings_hash

    saved = json.loads((out / "settings.json").read_text())
    saved["settings"]["train_device"] = "cuda"
    saved["hash"] = settings_hash(saved["settings"])
    (out / "settings.json").write_text(json.dumps(saved))
    with pytest.MonkeyPatch.context() as patch:
        import torch

        patch.setattr(torch.cuda, "is_available", lambda: False)
        code, _, err = invoke(capsys, "export", str(out), "--format", "onnx")
    assert code == 0, err
    code, _, err = invoke(capsys, "export", str(tmp_path / "nothing"), "--format", "onnx")
    assert_clean_error(code, err, 2, "holds no compressed network")


def test_a_recovery_that_hurts_held_out_agreement_is_not_deployed(capsys, monkeypatch, image_folder, labelled_folder,
                                                                   tmp_path):
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
    assert all(torch.equal(deployed[k], unrecovered[k]) for k in unrecovered)
    assert any(not torch.equal(recovered[k], unrecovered[k]) for k in unrecovered)


def test_a_deployed_blend_is_what_the_run_saves_and_exports_and_blends_are_off_by_default(
        capsys, monkeypatch, image_folder, labelled_folder, tmp_path):
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
