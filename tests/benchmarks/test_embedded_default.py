"""The embedded-default benchmark as a reduced smoke test, on a latency table with even savings.

The table is really measured, then every block's saving is set to 12% of the full latency (the
`even_savings` fixture): with capped smoke measurements a quiet machine once found 0.78 unreachable
("dropping every candidate block is predicted to keep 0.797"). Real timing stays in the benchmark itself.
"""

import json

import pytest


@pytest.mark.slow
def test_embedded_default_benchmark_smoke(tmp_path, even_savings):
    from benchmarks.embedded_default import render, run_benchmark

    result = run_benchmark("0.78", smoke=True, results_dir=tmp_path)
    saved = json.loads((tmp_path / "embedded_default_smoke.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert (tmp_path / "embedded_default_smoke.md").read_text() == render(saved)
    latency = saved["latency"]  # which plan ships (depth, or a faster precision) is the run's measured choice
    assert latency["target_ratio"] == 0.78 and latency["measured_ratio"] is not None  # measured on this machine
    assert saved["report_images"] == 20  # foolbox's labelled ImageNet photos
    images = saved["agreement_report_images"]
    teacher_top1 = next(iter(images.values()))["teacher_top1"]  # the labels were read; one original for all
    assert teacher_top1 == pytest.approx(12 / 20)  # EfficientNet-Lite0's packaged weights at 128 px: 12 photos right
    assert all(v["teacher_top1"] == teacher_top1 for v in images.values())
    best = max(v["top1_agreement"] for v in images.values())  # the deployed network agrees most (KL breaks ties)
    assert images[saved["deployed"]]["top1_agreement"] == best
