import pytest

from pipeline.core.errors import UsageError
from pipeline.run.runfolder import RunFolder


def test_reopening_with_the_same_settings_resumes(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {"a": 1})
    folder.write_json("stage.json", {"done": True})
    again = RunFolder.open(tmp_path / "run", {"a": 1})
    assert again.read_json("stage.json") == {"done": True}


def test_other_settings_are_refused_and_nothing_is_touched(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {"a": 1, "b": 2})
    folder.write_json("stage.json", {"done": True})
    with pytest.raises(UsageError, match="differs in: b"):
        RunFolder.open(tmp_path / "run", {"a": 1, "b": 3})
    assert folder.read_json("stage.json") == {"done": True}


def test_overwrite_replaces_a_run_but_never_a_foreign_folder(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {"a": 1})
    folder.write_json("stage.json", {})
    fresh = RunFolder.open(tmp_path / "run", {"a": 2}, overwrite=True)
    assert not fresh.has("stage.json")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="not a run folder"):
        RunFolder.open(foreign, {"a": 1})
    with pytest.raises(UsageError, match="refusing to delete"):
        RunFolder.open(foreign, {"a": 1}, overwrite=True)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_writes_are_atomic_and_leave_no_partial_files(tmp_path):
    folder = RunFolder.open(tmp_path / "run", {"a": 1})
    folder.write_json("x.json", {"k": list(range(1000))})
    folder.write_text("x.md", "hello")
    folder.save_tensors("x.pt", {})
    assert not [p for p in folder.path.iterdir() if p.name.endswith((".tmp", ".partial"))]


def test_settings_added_later_keep_older_run_folders_reopenable(tmp_path):
    from dataclasses import asdict

    from pipeline.run.config import RunConfig

    config = RunConfig(data="tiny", out=str(tmp_path / "run"))
    older = asdict(config)  # what the first version stored: no precision, CUDA-graph or export options
    for key in ("out", "overwrite", "reprofile", "precision", "cuda_graphs", "profile_time_cap", "dynamic_batch",
                "max_batch", "tensorrt_precision", "recovery_point_weight", "recovery_mixing", "train_device",
                "recovery_synthetic", "recovery_blends", "recovery_views", "recovery_time", "recovery_quantization_aware", "mean", "std", "crop_fraction",
                "interpolation", "depth_plans", "reference_backend", "min_resolution", "latency_margin"):
        older.pop(key)
    older["export"] = list(config.export)
    RunFolder.open(tmp_path / "run", older)
    RunFolder.open(tmp_path / "run", config.identity())  # reopens: same settings
    with pytest.raises(UsageError, match="differs in: precision"):
        RunFolder.open(tmp_path / "run", RunConfig(data="tiny", precision="fp16").identity())
    with pytest.raises(UsageError, match="differs in: recovery_mixing"):
        RunFolder.open(tmp_path / "run", RunConfig(data="tiny", recovery_mixing="cutmix").identity())
    with pytest.raises(UsageError, match="differs in: train_device"):
        RunFolder.open(tmp_path / "run", RunConfig(data="tiny", train_device="cuda").identity())
    with pytest.raises(UsageError, match="differs in: recovery_blends"):
        RunFolder.open(tmp_path / "run", RunConfig(data="tiny", recovery_blends="0.5").identity())
    with pytest.raises(UsageError, match="differs in: depth_plans"):
        RunFolder.open(tmp_path / "run", RunConfig(data="tiny", depth_plans="always").identity())
    with pytest.raises(UsageError, match="differs in: reference_backend"):
        RunFolder.open(tmp_path / "run", RunConfig(data="tiny", reference_backend="openvino").identity())
    with pytest.raises(UsageError, match="differs in: recovery_quantization_aware"):
        RunFolder.open(tmp_path / "run", RunConfig(data="tiny", recovery_quantization_aware="off").identity())
