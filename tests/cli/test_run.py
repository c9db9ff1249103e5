"""pipeline run: input refused before any work is done."""

import json

import pytest

from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke


def test_training_on_an_absent_gpu_is_refused_before_any_work(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--train-device", "cuda",
                          "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "--train-device cuda needs a CUDA GPU")
    assert not (tmp_path / "run").exists()


def test_synthetic_inputs_for_a_network_without_batchnorm_are_refused_before_any_work(capsys, image_folder,
                                                                                      tmp_path):
    code, _, err = invoke(capsys, "run", "--model", "tests.tiny_models:tiny_resnet_without_batchnorm", *FAST_RUN,
                          "--data", str(image_folder), "--recovery-synthetic", "8", "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "has no BatchNorm layer")
    assert not (tmp_path / "run").exists()


def test_empty_data_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(tmp_path / "empty"))
    assert_clean_error(code, err, 2, "too few usable images")


def test_unreachable_budget_names_the_best_ratio(capsys, image_folder, tmp_path):
    """With a recorded table (every block saves 5% of 4 ms), dropping all 4 blocks keeps 0.8 at best."""
    from pipeline.models import load_model
    from pipeline.network.blocks import analyse
    from profilers.stats import summarize
    from profilers.table import LatencyTable
    from tests.recorded_tables import fingerprint

    loaded = load_model(TINY, resolution=32)
    blocks = analyse(loaded.module, 32).candidate_names()
    table = LatencyTable(loaded.spec, loaded.architecture_hash(), fingerprint(device_name="Deployment CPU"),
                         summarize([4.0, 4.0, 4.0]), {b: summarize([0.2, 0.2, 0.2]) for b in blocks}, {},
                         "2026-11-25T00:00:00Z")
    table_file = tmp_path / "table.json"
    table_file.write_text(json.dumps(table.to_dict()))
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
                          "--latency-budget", "0.5", "--latency-table", str(table_file), "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "cannot be reached")
    assert "keep 0.800 of the original latency" in err and "Choose a budget of at least 0.80" in err
