"""The onnxruntime backend times exported ONNX files."""

import torch

from pipeline.latency.profiling import FULL
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from profilers import ProfileSettings, get_profiler

QUICK = ProfileSettings(resolution=32, threads=2, warmup_runs=1, runs_per_round=3, min_rounds=3, max_rounds=5,
                        time_cap_s=20)


def _tiny():
    loaded = load_model("tests.tiny_models:tiny_resnet", resolution=32)
    return loaded, analyse(loaded.module, 32)


def test_onnxruntime_measures_exported_files(tmp_path):
    from exporters.onnx_file import export_onnx

    loaded, _ = _tiny()
    path = export_onnx(loaded.module, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    with get_profiler("cpu", "onnxruntime", QUICK) as profiler:
        m = profiler.measure({FULL: path})
    assert len(m.rounds_ms[FULL]) >= 3
