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


class _ExportSpy:
    """Counts the dynamo exports the profiler makes (exporters.onnx_file.export_onnx, imported when called)."""

    def __init__(self, monkeypatch):
        import exporters.onnx_file as onnx_file

        self.calls: list = []
        real = onnx_file.export_onnx

        def spy(module, *args, **kwargs):
            self.calls.append(module)
            return real(module, *args, **kwargs)

        monkeypatch.setattr(onnx_file, "export_onnx", spy)


def test_a_latency_table_exports_the_original_once_and_times_every_variant(monkeypatch):
    from pipeline.latency.profiling import measure_end_to_end, profile_candidates
    from pipeline.network.surgery import drop_blocks

    loaded, structure = _tiny()
    exports = _ExportSpy(monkeypatch)
    messages: list[str] = []
    with get_profiler("cpu", "onnxruntime", QUICK) as profiler:
        profiler.log = messages.append
        table = profile_candidates(loaded, structure, profiler)
        int8 = profile_candidates(loaded, structure, profiler.at_precision("int8-qdq-u8s8-channel"))
        blocks = structure.candidate_names()[:2]
        end_to_end = measure_end_to_end(loaded.module, drop_blocks(loaded.module, blocks), profiler)
        files = set(profiler._exports.values())
    assert exports.calls == [loaded.module], "only the original is exported; every variant is an edit of its file"
    assert not messages
    assert set(table.savings) == set(int8.savings) == set(structure.candidate_names())
    assert all(s.rounds >= 3 for s in [*table.savings.values(), *int8.savings.values()])
    assert end_to_end.compressed.median_ms > 0
    assert len(files) == 1 + len(structure.candidate_names()) + 1  # one file per network, each its own


def test_an_edited_file_of_a_batch_is_checked_on_the_whole_batch(monkeypatch):
    from dataclasses import replace

    from pipeline.network.surgery import drop_blocks

    loaded, _ = _tiny()
    exports = _ExportSpy(monkeypatch)
    messages: list[str] = []
    with get_profiler("cpu", "onnxruntime", replace(QUICK, batch=3)) as profiler:
        profiler.log = messages.append
        m = profiler.measure({FULL: loaded.module, "variant": drop_blocks(loaded.module, ["layers.0.1"])})
    assert exports.calls == [loaded.module] and not messages
    assert len(m.rounds_ms["variant"]) >= 3


def test_a_variant_that_is_not_its_base_minus_blocks_is_exported_the_normal_way_and_said(monkeypatch):
    import torch

    from pipeline.network.surgery import drop_blocks

    loaded, _ = _tiny()
    trained = drop_blocks(loaded.module, ["layers.0.1"])
    with torch.no_grad():
        trained.fc.bias.add_(0.5)  # trained after the drop: no longer the original minus a block
    exports = _ExportSpy(monkeypatch)
    messages: list[str] = []
    with get_profiler("cpu", "onnxruntime", QUICK) as profiler:
        profiler.log = messages.append
        m = profiler.measure({FULL: loaded.module, "trained": trained})
    assert exports.calls == [loaded.module, trained]
    assert len(messages) == 1 and "no longer holds its base network's weights" in messages[0]
    assert len(m.rounds_ms["trained"]) >= 3


def test_an_edited_file_that_disagrees_with_pytorch_is_not_timed(monkeypatch):
    import exporters.onnx_drop as onnx_drop
    from pipeline.network.surgery import drop_blocks

    loaded, _ = _tiny()
    monkeypatch.setattr(onnx_drop, "drop_blocks_onnx", lambda model, blocks: model)  # a wrong edit: nothing dropped
    variant = drop_blocks(loaded.module, ["layers.2.1"])
    exports = _ExportSpy(monkeypatch)
    messages: list[str] = []
    with get_profiler("cpu", "onnxruntime", QUICK) as profiler:
        profiler.log = messages.append
        profiler.measure({FULL: loaded.module, "variant": variant})
    assert exports.calls == [loaded.module, variant]
    assert len(messages) == 1 and "disagrees with the PyTorch variant" in messages[0], messages


def test_the_default_log_is_a_warning():
    import pytest

    with get_profiler("cpu", "onnxruntime", QUICK) as profiler, pytest.warns(RuntimeWarning, match="said"):
        profiler.log("said")
