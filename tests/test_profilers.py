from dataclasses import replace

import pytest
import torch

from pipeline.core.errors import UsageError
from pipeline.latency.profiling import FULL, measure_end_to_end, profile_candidates
from pipeline.models import load_model
from pipeline.network.blocks import analyse
from profilers import ProfileSettings, get_profiler

QUICK = ProfileSettings(resolution=32, threads=2, warmup_runs=1, runs_per_round=3, min_rounds=3, max_rounds=5,
                        time_cap_s=20)


def _tiny():
    loaded = load_model("tests.tiny_models:tiny_resnet", resolution=32)
    return loaded, analyse(loaded.module, 32)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_cpu_backends_measure_every_variant(backend):
    loaded, structure = _tiny()
    with get_profiler("cpu", backend, QUICK) as profiler:
        table = profile_candidates(loaded, structure, profiler)
    assert set(table.savings) == set(structure.candidate_names())
    assert table.full.median_ms > 0 and table.full.rounds >= 3
    fp = table.fingerprint
    assert fp.device_kind == "cpu" and fp.threads == 2 and fp.resolution == 32 and fp.batch == 1
    assert fp.backend.startswith(backend) and fp.backend_version
    assert table.method["stop_reason"] in ("stable", "max_rounds", "time_cap")
    # dropping every block of the network must be measurably faster than the full network
    with get_profiler("cpu", backend, QUICK) as profiler:
        from pipeline.network.surgery import drop_blocks

        e2e = measure_end_to_end(loaded.module, drop_blocks(loaded.module, structure.candidate_names()), profiler)
    assert e2e.ratio_median < 1.0


def test_onnxruntime_measures_exported_files(tmp_path):
    from exporters.onnx_file import export_onnx

    loaded, _ = _tiny()
    path = export_onnx(loaded.module, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    with get_profiler("cpu", "onnxruntime", QUICK) as profiler:
        m = profiler.measure({FULL: path})
    assert len(m.rounds_ms[FULL]) >= 3


def test_unknown_target_and_backend_are_usage_errors():
    with pytest.raises(UsageError, match="unsupported target 'tpu'"):
        get_profiler("tpu", None, QUICK)
    with pytest.raises(UsageError, match="available: onnxruntime, torch"):
        get_profiler("cpu", "tensorflow", QUICK)


def test_gpu_target_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        with get_profiler("gpu", None, QUICK):
            pass


@pytest.mark.gpu
def test_torch_cuda_profiler_measures_fp16():
    loaded, structure = _tiny()
    with get_profiler("gpu", "torch", replace(QUICK, precision="fp16")) as profiler:
        table = profile_candidates(loaded, structure, profiler)
    assert table.fingerprint.device_kind == "gpu" and table.fingerprint.compute_capability
    assert table.full.median_ms > 0
    # the profiled network itself stays on the CPU in FP32 (found: .to() moved the teacher, breaking export)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.module.parameters())


def test_options_a_backend_cannot_honour_are_refused():
    with pytest.raises(UsageError, match="--cuda-graphs applies to the torch backend on gpu only"):
        get_profiler("cpu", "torch", replace(QUICK, cuda_graphs=True))
    with pytest.raises(UsageError, match="measures fp32, not fp16"):
        get_profiler("cpu", "onnxruntime", replace(QUICK, precision="fp16"))
    with pytest.raises(UsageError, match="measures fp32, fp16, not int8"):
        get_profiler("gpu", "torch", replace(QUICK, precision="int8"))


def test_gpu_target_names_the_backend_it_uses():
    from exporters.tensorrt_engine import tensorrt_available
    from profilers import default_backend

    backend, sentence = default_backend("gpu")
    if tensorrt_available():
        assert backend == "tensorrt" and "TensorRT" in sentence
    else:
        assert backend == "torch" and "TensorRT is not installed" in sentence and ".[tensorrt]" in sentence


def test_tensorrt_backend_without_tensorrt_says_how_to_install_it():
    from exporters.tensorrt_engine import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is installed")
    with pytest.raises(UsageError, match=r"pip install '\.\[tensorrt\]'"):
        with get_profiler("gpu", "tensorrt", QUICK):
            pass


def test_fingerprint_options_keep_old_keys_and_separate_new_ones():
    from profilers import DeviceFingerprint

    base = DeviceFingerprint("GPU", "gpu", "9.0", "cuda-12", "torch-cuda", "2.14", "fp16", 1, 224, 16, "2.14", "x86_64")
    old_style = {k: v for k, v in base.to_dict().items() if k != "options"}
    assert DeviceFingerprint.from_dict(old_style).key() == base.key()
    graphs = replace(base, options="cuda-graphs")
    assert graphs.key() != base.key() and "cuda-graphs" in graphs.describe()


@pytest.mark.gpu
def test_torch_cuda_profiler_replays_cuda_graphs():
    loaded, structure = _tiny()
    with get_profiler("gpu", "torch", replace(QUICK, cuda_graphs=True)) as profiler:
        table = profile_candidates(loaded, structure, profiler)
    assert table.fingerprint.options == "cuda-graphs" and table.full.median_ms > 0


def _require_tensorrt():
    from exporters.tensorrt_engine import tensorrt_available

    if not torch.cuda.is_available() or not tensorrt_available():
        pytest.skip("needs a CUDA GPU with TensorRT installed (pip install '.[tensorrt]')")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_profiler_builds_an_engine_per_variant(precision):
    _require_tensorrt()
    loaded, structure = _tiny()
    with get_profiler("gpu", "tensorrt", replace(QUICK, precision=precision)) as profiler:
        table = profile_candidates(loaded, structure, profiler)
    assert table.fingerprint.backend == "tensorrt" and table.fingerprint.precision == precision
    assert set(table.savings) == set(structure.candidate_names()) and table.full.median_ms > 0


def test_busy_machine_is_detected_from_proc_stat_snapshots():
    from profilers.load import busy_cores, load_warning

    # cpu user nice system idle iowait irq softirq steal: 100 of 200 jiffies busy on 2 cores = 1 core
    before = "cpu  1000 0 0 1000 0 0 0 0 0 0\ncpu0 ..."
    after = "cpu  1100 0 0 1100 0 0 0 0 0 0\ncpu0 ..."
    assert abs(busy_cores(before, after, 2) - 1.0) < 1e-9
    message = load_warning(1.0, threads=2, cores=2)
    assert "about 1.0 of this machine's 2 cores" in message and "--threads 1" in message
    assert load_warning(1.0, threads=1, cores=2) is None  # one thread fits beside it
    assert load_warning(0.1, threads=2, cores=2) is None  # idle
