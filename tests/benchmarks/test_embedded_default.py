"""The embedded-default benchmark as a reduced smoke test."""

import json

import pytest


@pytest.mark.slow
def test_embedded_default_benchmark_smoke(tmp_path):
    from benchmarks.embedded_default import run_benchmark

    result = run_benchmark("0.78", smoke=True, results_dir=tmp_path)
    saved = json.loads((tmp_path / "embedded_default_smoke.json").read_text())
    assert saved["latency"]["measured_ratio"] is not None
    assert saved["report_images"] == 20  # foolbox's labelled ImageNet photos
    assert result["agreement_report_images"]["unrecovered"]["teacher_top1"] is not None  # labels were read
    assert "| measured ratio" in (tmp_path / "embedded_default_smoke.md").read_text()
