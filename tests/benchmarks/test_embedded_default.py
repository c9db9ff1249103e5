"""The embedded-default benchmark as a reduced smoke test: the benchmark's code, not the default's timing.

FP32 only and 1 s measurements (the precision survey and plans are tested in tests/run/test_plan_stages.py),
and a latency table whose single-block savings are not timed: the full network is measured on this machine,
every block is given 12% of it. Timing ten Lite0 variants took 80 to 120 s of this test and decided nothing it
checks; with capped measurements a quiet machine once found 0.78 unreachable. The plans' end-to-end checks and
the artefact timing are real. Real timing stays in the benchmark itself.
"""

import json

import pytest


@pytest.fixture
def even_table_untimed_blocks(monkeypatch):
    """`profile_candidates` measuring only the full network; each block's saving set to 12% of it."""
    from pipeline.latency import profiling
    from profilers.stats import summarize
    from profilers.table import LatencyTable

    def even(loaded, structure, profiler, progress=None):
        full = profiler.measure({profiling.FULL: loaded.module}).rounds_ms[profiling.FULL]
        saving = summarize([0.12 * float(summarize(full).median_ms)] * 3)
        return LatencyTable(loaded.spec, loaded.architecture_hash(), profiler.fingerprint(), summarize(full),
                            {block: saving for block in structure.candidate_names()},
                            profiler.settings.method() | {"savings": "12% each, not timed (test)"}, "test")

    monkeypatch.setattr(profiling, "profile_candidates", even)


@pytest.mark.slow
def test_embedded_default_benchmark_smoke(tmp_path, even_table_untimed_blocks):
    from benchmarks.embedded_default import render, run_benchmark

    result = run_benchmark("0.78", smoke=True, results_dir=tmp_path)
    saved = json.loads((tmp_path / "embedded_default_smoke.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert (tmp_path / "embedded_default_smoke.md").read_text() == render(saved)
    latency = saved["latency"]  # which plan ships is the run's measured choice
    assert latency["target_ratio"] == 0.78 and latency["measured_ratio"] is not None  # measured on this machine
    assert latency["device"]["precision"] == "fp32" and "FP32 timing" in render(saved)
    assert saved["report_images"] == 20  # foolbox's labelled ImageNet photos
    images = saved["agreement_report_images"]
    teacher_top1 = next(iter(images.values()))["teacher_top1"]  # the labels were read; one original for all
    assert teacher_top1 == pytest.approx(12 / 20)  # EfficientNet-Lite0's packaged weights at 128 px: 12 photos right
    assert all(v["teacher_top1"] == teacher_top1 for v in images.values())
    best = max(v["top1_agreement"] for v in images.values())  # the deployed network agrees most (KL breaks ties)
    assert images[saved["deployed"]]["top1_agreement"] == best
