"""Every profiler backend in the registry meets the same contract, so a new backend is tested by registering it.

For each (target, backend) of `profilers._BACKENDS`: the class imports without its optional runtime, says
which precisions it measures, refuses the others, and, where the device is present, measures two networks
in interleaved rounds and describes the device it measured on. GPU backends are marked `gpu` (skipped
without a CUDA GPU); TensorRT is skipped where only its stubs are installed.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest

from pipeline.core.errors import UsageError
from pipeline.network.surgery import drop_blocks
from profilers import _BACKENDS, ProfileSettings, get_profiler
from profilers.base import Profiler
from tests.tiny_models import tiny_resnet

QUICK = ProfileSettings(resolution=32, threads=1, warmup_runs=1, runs_per_round=2, min_rounds=3, max_rounds=3,
                        time_cap_s=20)


def _registered() -> list:
    params = []
    for target, backends in sorted(_BACKENDS.items()):
        for backend in sorted(backends):
            marks = [pytest.mark.gpu] if target == "gpu" else []
            if backend == "inductor":  # compiles each network: about 15 s on 2 idle cores, a minute when loaded
                marks.append(pytest.mark.slow)
            params.append(pytest.param(target, backend, marks=marks, id=f"{target}-{backend}"))
    return params


def _backend_class(target: str, backend: str) -> type[Profiler]:
    module_name, _, class_name = _BACKENDS[target][backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def _skip_without_runtime(backend: str) -> None:
    if backend == "tensorrt":
        from exporters.tensorrt_engine import tensorrt_available

        if not tensorrt_available():
            pytest.skip("needs TensorRT installed (pip install '.[tensorrt]')")


def test_the_registry_names_cpu_and_gpu_backends():
    assert set(_BACKENDS) == {"cpu", "gpu"} and all(_BACKENDS.values())


@pytest.mark.parametrize("target,backend", [pytest.param(t, b, id=f"{t}-{b}")
                                            for t, bs in sorted(_BACKENDS.items()) for b in sorted(bs)])
def test_each_backend_imports_without_its_runtime_and_declares_what_it_measures(target, backend):
    cls = _backend_class(target, backend)  # importing never needs the device or the optional package
    assert issubclass(cls, Profiler) and cls.precisions and all(isinstance(p, str) for p in cls.precisions)
    assert isinstance(cls.supports_cuda_graphs, bool)
    unsupported = [p for p in ("fp32", "fp16", "int8", "fp4-made-up") if p not in cls.precisions]
    for precision in unsupported:
        with pytest.raises(UsageError, match=f"not {precision}"):
            get_profiler(target, backend, replace(QUICK, precision=precision))
    if not cls.supports_cuda_graphs:
        with pytest.raises(UsageError, match="--cuda-graphs"):
            get_profiler(target, backend, replace(QUICK, cuda_graphs=True))


@pytest.mark.parametrize("target,backend", _registered())
def test_each_backend_measures_two_networks_in_rounds_and_fingerprints_its_device(target, backend):
    _skip_without_runtime(backend)
    network = tiny_resnet().eval()
    variants = {"full": network, "pruned": drop_blocks(network, ["layers.0.1", "layers.2.1"])}
    with get_profiler(target, backend, QUICK) as profiler:
        measurement = profiler.measure(variants)
        fingerprint = profiler.fingerprint()
    assert set(measurement.rounds_ms) == set(variants)
    rounds = {len(r) for r in measurement.rounds_ms.values()}
    assert len(rounds) == 1 and rounds.pop() >= QUICK.min_rounds  # interleaved: every variant in every round
    assert all(ms > 0 for r in measurement.rounds_ms.values() for ms in r)
    assert measurement.stop_reason in ("stable", "ratios_settled", "max_rounds", "time_cap") and measurement.elapsed_s > 0
    assert fingerprint.device_kind == target and fingerprint.backend and fingerprint.backend_version
    assert (fingerprint.resolution, fingerprint.batch, fingerprint.precision) == (32, 1, "fp32")
    assert fingerprint.key() == replace(fingerprint).key()  # a stable key names the table file
