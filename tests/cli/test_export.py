"""pipeline export: checked, timed artefacts added to a finished run."""

import json

import pytest

from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke


def test_export_command_adds_checked_artefacts_to_a_finished_run(capsys, image_folder, tmp_path, even_savings):
    out = tmp_path / "run"
    assert invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
                  "--latency-budget", "0.9", "--out", str(out))[0] == 0
    # the folder names user code (TINY is package.module:function): reopening it runs that code only when asked
    before = (out / "report.json").stat().st_mtime_ns
    code, _, err = invoke(capsys, "export", str(out), "--format", "torchscript")
    assert_clean_error(code, err, 2, "--trust-model-code")
    assert (out / "report.json").stat().st_mtime_ns == before and not (out / "model.torchscript.pt").exists()
    code, stdout, err = invoke(capsys, "export", str(out), "--format", "torchscript", "--format", "onnx-int8",
                               "--format", "onnx", "--dynamic-batch", "--trust-model-code")
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
    code, _, err = invoke(capsys, "export", str(out), "--format", "tensorrt", "--trust-model-code")
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
        code, _, err = invoke(capsys, "export", str(out), "--format", "onnx", "--trust-model-code")
    assert code == 0, err
    code, _, err = invoke(capsys, "export", str(tmp_path / "nothing"), "--format", "onnx")
    assert_clean_error(code, err, 2, "holds no compressed network")
