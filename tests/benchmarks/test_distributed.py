"""The distributed benchmark's summary: identical scores and selections are checked, efficiencies computed."""

from benchmarks.distributed import render, summarise


def _run(procs, scoring, recovery, scores=None, dropped=("b1",)):
    return {"repeat": 0, "procs": procs, "wall_s": 10.0, "scoring_s": scoring, "recovery_s": recovery,
            "dropped": list(dropped), "scores": scores or {"b1": 0.1, "b2": 0.2}, "effective_batch": 16 * procs,
            "kept": "recovered", "best_step": 20, "selection_kl_after": 0.1, "report_images": 10,
            "agreement": {"unrecovered": 0.8, "recovered": 0.9}, "accuracy": {"unrecovered": None, "recovered": None},
            "teacher_accuracy": None}


def test_scaling_efficiency_and_identity_checks():
    summary = summarise([_run(1, 100.0, 40.0), _run(2, 50.0, 40.0), _run(2, 60.0, 44.0), _run(1, 110.0, 44.0)])
    assert summary["scores_identical"] and summary["selections_identical"]
    assert summary["scoring_speedup"] == 1.91 and summary["scoring_efficiency"] == 0.95  # 105 / 55
    assert summary["recovery_throughput_efficiency"] == 1.0  # same wall time, twice the images
    other = summarise([_run(1, 1.0, 1.0), _run(2, 1.0, 1.0, scores={"b1": 0.1, "b2": 0.21}, dropped=("b2",))])
    assert not other["scores_identical"] and not other["selections_identical"]
    text = render({"command": "x", "machine_text": "m", "load_note": "loaded",
                   "cases": {"c": {"about": "a", "runs": [_run(1, 1.0, 1.0)], "summary": summary}}})
    assert "scaling efficiency **95%**" in text and "| 1 | 1 | 1.0 | 1.0 |" in text
