"""The error contract: bad input is one line and exit 2, failures exit 1, bugs say so."""

import errno

import pytest
import torch

from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke


@pytest.mark.parametrize("args,fragment", [
    (["blocks", "--model", "resnet_19"], "unknown model 'resnet_19'"),
    (["blocks", "--model", TINY, "--weights", "/no/such/file.pt"], "does not exist"),
    (["run", "--model", TINY, "--latency-budget", "1.5"], "outside (0, 1]"),
    (["run", "--model", TINY, "--latency-budget", "fast please"], "not understood"),
    (["run", "--model", "mobilenet_v2"], "has no trained weights"),
    (["run", "--model", TINY, "--allow-random-weights", "--data", "/no/such/folder"], "does not exist"),
    (["run", "--model", TINY, "--allow-random-weights", "--backend", "tensorrt"], "not available for target 'cpu'"),
    (["run", "--model", TINY, "--allow-random-weights", "--recovery-blends", "1.5"], "--recovery-blends '1.5' is not"),
    (["run", "--model", TINY, "--allow-random-weights", "--recovery-blends", "half"], "strictly between 0 and 1"),
])
def test_bad_input_gets_one_line_and_exit_code_2(capsys, args, fragment):
    code, _, err = invoke(capsys, *args)
    assert_clean_error(code, err, 2, fragment)


def test_unknown_target_is_rejected_by_the_parser(capsys):
    code, _, err = invoke(capsys, "run", "--target", "tpu")
    assert code == 2 and "tpu" in err and "Traceback" not in err


def test_an_unknown_backend_is_rejected_by_the_parser_with_the_registrys_names(capsys):
    code, _, err = invoke(capsys, "run", "--backend", "tensorflow")
    assert code == 2 and "'tensorflow' is not one of 'auto', 'inductor', 'onnxruntime', 'openvino'" in err
    code, _, err = invoke(capsys, "profile", "--target", "gpu", "--precision", "bf16", "--help")
    assert code == 0  # bf16 (a GPU backend's precision) is a choice: the choices come from the profiler registry


def test_full_disk_is_one_line_and_exit_1(capsys, monkeypatch, image_folder, tmp_path):
    import pipeline.run.runfolder as runfolder

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runfolder, "write_json_atomic", full)
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
                          "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 1, "the disk is full")


def test_out_of_memory_suggests_a_smaller_batch(capsys, monkeypatch, image_folder, tmp_path):
    import pipeline.run.stages as run_module

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(run_module, "score_recoverability", oom)
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
                          "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 1, "use a smaller --batch-size")


def test_a_bug_is_reported_as_internal_error_and_debug_shows_the_traceback(capsys, monkeypatch):
    import pipeline.network.blocks as blocks

    monkeypatch.setattr(blocks, "analyse", lambda *a, **k: 1 / 0)
    code, _, err = invoke(capsys, "blocks", "--model", TINY)
    assert_clean_error(code, err, 1, "internal error ZeroDivisionError")
    with pytest.raises(ZeroDivisionError):
        invoke(capsys, "--debug", "blocks", "--model", TINY)


@pytest.mark.parametrize("rank,error,printed", [
    (0, "peer", "error: rank 0/2: lost contact"),  # rank 0 says why the run stopped
    (1, "peer", None),  # the other ranks do not repeat it
    (1, "main", None),  # rank 0 failed and said why
    (1, "usage", "error: rank 1/2: bad thing"),  # a rank's own error is its own line, tagged
])
def test_under_torchrun_one_line_says_why_the_run_stopped(capsys, monkeypatch, rank, error, printed):
    import pipeline.run.runner as runner
    from pipeline.core import distributed
    from pipeline.core.errors import UsageError

    errors = {"peer": distributed.PeerLost("lost contact with another rank"), "main": distributed.MainStopped(2),
              "usage": UsageError("bad thing")}

    def failing(*args, **kwargs):
        raise errors[error]

    monkeypatch.setattr(distributed, "_current", distributed.World(rank, 2))
    monkeypatch.setattr(runner, "run", failing)
    code, _, err = invoke(capsys, "run", "--model", TINY)
    assert code == errors[error].exit_code
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == ([] if printed is None else [lines[0]]) and (printed is None or lines[0].startswith(printed))
