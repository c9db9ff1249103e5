"""The run's plan stage (pipeline/run/plan_stages.py): selection corrected by fake end-to-end measurements."""





def test_a_measured_miss_makes_the_next_attempt_drop_more_even_when_the_prediction_overshot(image_folder, tmp_path,
                                                                                           monkeypatch, even_savings):
    """The table predicts the chosen network well under the budget, but every measurement misses it."""
    import json

    from pipeline.latency.profiling import EndToEnd
    from pipeline.run import plan_stages as run_module
    from pipeline.run.config import RunConfig
    from pipeline.run.runner import run
    from profilers.stats import summarize

    def always_missing(original, compressed, profiler, progress=None):
        kept = sum(1 for m in compressed.modules() if m.__class__.__name__ == "Identity")
        return EndToEnd(summarize([1.0, 1.0, 1.0]), summarize([0.95] * 3), 0.95 - 0.001 * kept, "stable")

    monkeypatch.setattr(run_module, "measure_end_to_end", always_missing)
    config = RunConfig(model="tests.tiny_models:tiny_resnet", data=str(image_folder), resolution=32,
                                  allow_random_weights=True, backend="torch", budget="0.9", scoring_steps=2,
                                  recovery_steps=2, batch_size=4, profile_time_cap=1, out=str(tmp_path / "run"),
                                  export=())
    run(config)
    attempts = json.loads((tmp_path / "run" / "selection.json").read_text())["attempts"]
    assert len(attempts) >= 2 and not attempts[-1]["meets_budget"]
    sizes = [len(a["dropped"]) for a in attempts]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes  # never the same selection twice


def test_a_measurement_far_under_the_budget_tries_fewer_blocks_and_keeps_the_closest_that_meets(
        image_folder, tmp_path, monkeypatch, even_savings):
    """Found on the CPU machine: a table profiled while the machine was slow predicted 0.761 for five blocks,
    which measured 0.658 against a budget of 0.78; fewer blocks would have met it, with less to recover."""
    import json

    from torch import nn

    from pipeline.latency.profiling import EndToEnd
    from pipeline.run import plan_stages as run_module
    from pipeline.run.config import RunConfig
    from pipeline.run.runner import run
    from profilers import LatencyTable
    from profilers.stats import summarize

    out = tmp_path / "run"

    def faster_than_the_table_says(original, compressed, profiler, progress=None):
        table = LatencyTable.from_dict(json.loads((out / "latency_table.json").read_text())["table"])
        dropped = [n for n, m in compressed.named_modules() if isinstance(m, nn.Identity)]
        ratio = table.predicted_ratio(dropped) - 0.2
        return EndToEnd(summarize([1.0] * 3), summarize([ratio] * 3), ratio, "stable")

    monkeypatch.setattr(run_module, "measure_end_to_end", faster_than_the_table_says)
    config = RunConfig(model="tests.tiny_models:tiny_resnet", data=str(image_folder), resolution=32,
                                  allow_random_weights=True, backend="torch", budget="0.65", scoring_steps=2,
                                  recovery_steps=2, batch_size=4, profile_time_cap=1, out=str(out), export=())
    folder = run(config)
    selection = json.loads((out / "selection.json").read_text())
    attempts = selection["attempts"]
    assert attempts[0]["measured"]["ratio_median"] < 0.65 - 0.03  # far under: worth fewer blocks
    assert len(attempts) >= 2 and len(attempts[1]["dropped"]) < len(attempts[0]["dropped"])
    measured = [a["measured"]["ratio_median"] for a in attempts]
    chosen = attempts[selection["chosen_attempt"]]
    assert chosen["meets_budget"] and selection["dropped"] == chosen["dropped"]
    assert chosen["measured"]["ratio_median"] == max(r for r in measured if r <= 0.65)
    report = json.loads((folder.path / "report.json").read_text())
    assert report["latency"]["measured_ratio"] == chosen["measured"]["ratio_median"]


def test_a_table_far_from_the_end_to_end_measurement_is_named(image_folder, tmp_path, monkeypatch, capsys, even_savings):
    import json

    from pipeline.latency.profiling import EndToEnd
    from pipeline.run import plan_stages as run_module
    from pipeline.run.config import RunConfig
    from pipeline.run.runner import run
    from profilers import LatencyTable
    from profilers.stats import summarize

    out = tmp_path / "run"

    def three_times_faster_than_the_table(original, compressed, profiler, progress=None):
        full = LatencyTable.from_dict(json.loads((out / "latency_table.json").read_text())["table"]).full.median_ms
        return EndToEnd(summarize([full / 3] * 3), summarize([full / 3 * 0.7] * 3), 0.7, "stable")

    monkeypatch.setattr(run_module, "measure_end_to_end", three_times_faster_than_the_table)
    messages = []
    config = RunConfig(model="tests.tiny_models:tiny_resnet", data=str(image_folder), resolution=32,
                                  allow_random_weights=True, backend="torch", budget="0.75", scoring_steps=2,
                                  recovery_steps=2, batch_size=4, profile_time_cap=1, out=str(out), export=())
    run(config, log=messages.append)
    assert any("measures" in m and "(-67%)" in m and "--reprofile" in m for m in messages), messages
    first = json.loads((out / "selection.json").read_text())["attempts"][0]
    assert "other conditions" in first["table_disagreement"]
    assert "Warning: the original network measures" in (out / "report.md").read_text()


def test_the_training_layout_is_timed_once_per_run_folder_and_reused_after(monkeypatch):
    """A resumed run (or every torchrun rank) trains in the layout the first measurement chose: the two layouts
    differ in rounding, so choosing again could make a resumed run differ from an uninterrupted one."""
    from types import SimpleNamespace

    import torch

    from pipeline.run import stages

    class Folder:
        def __init__(self):
            self.files = {}

        def has(self, name):
            return name in self.files

        def read_json(self, name):
            return self.files[name]

        def write_json(self, name, data):
            self.files[name] = data

    timings = iter([("channels_last", {"channels_last": 1.0, "contiguous": 2.0}),
                    ("contiguous", {"channels_last": 2.0, "contiguous": 1.0})])
    monkeypatch.setattr(stages, "faster_layout", lambda model, example: next(timings))
    said = []
    ctx = SimpleNamespace(folder=Folder(), log=said.append, train_device=torch.device("cpu"))
    assert stages.training_layout(ctx, None, torch.zeros(4, 3, 8, 8)) == "channels_last"
    assert ctx.folder.files[stages.LAYOUT_FILE]["layout"] == "channels_last" and len(said) == 1
    assert stages.training_layout(ctx, None, torch.zeros(4, 3, 8, 8)) == "channels_last"  # not timed again
    assert len(said) == 1 and next(timings)[0] == "contiguous"  # the second timing was never taken
