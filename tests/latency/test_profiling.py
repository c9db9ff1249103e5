"""Profiling every candidate block with each CPU backend, and end-to-end measurement."""

from dataclasses import replace

import pytest

from pipeline.latency.profiling import measure_end_to_end, profile_candidates
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
    assert table.method["stop_reason"] in ("stable", "ratios_settled", "max_rounds", "time_cap")
    # dropping every block of the network must be measurably faster than the full network: more rounds than
    # QUICK's 5 of 3 runs, whose median ratio a loaded machine once pushed over 1 (a fraction of a second more)
    steady = replace(QUICK, warmup_runs=3, runs_per_round=10, min_rounds=9, max_rounds=15)
    with get_profiler("cpu", backend, steady) as profiler:
        from pipeline.network.surgery import drop_blocks

        e2e = measure_end_to_end(loaded.module, drop_blocks(loaded.module, structure.candidate_names()), profiler)
    assert e2e.ratio_median < 1.0
