"""The Fashion-MNIST benchmark on a small synthetic idx set in the real file format."""

import json
import re

import pytest

from tests.records import assert_records_close


def _write_idx(path, array):
    """An idx .gz file in the real MNIST format: magic (0x08 = ubyte, ndim), big-endian dims, data."""
    import gzip

    import numpy as np

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fake_fashion_mnist(folder, train: int = 400, test: int = 200):
    """Class-dependent patterns: a bright bar whose row and width depend on the class, plus noise."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            row = 3 + 2 * int(c)
            images[i, row:row + 3, 4:10 + 2 * int(c)] = 230
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.mark.slow
def test_fashion_mnist_benchmark_smoke(tmp_path, even_savings):
    """The table is measured, then every block saves 12% (as run_folders does): a busy machine's table of this tiny
    network once predicted 0.805 at best, and the smoke run's 0.78 budget was refused."""
    from benchmarks.fashion_mnist import METHODS, main, read_idx

    data = _fake_fashion_mnist(tmp_path / "fmnist")
    assert read_idx(data / "train-images-idx3-ubyte.gz").shape == (400, 28, 28)
    out = tmp_path / "out"
    main(["--smoke", "--data-dir", str(data), "--out", str(out)])
    saved = json.loads((out / "fashion_mnist_smoke.json").read_text())
    assert {r["method"] for r in saved["records"]} == set(METHODS)
    assert len(saved["candidates"]) == 7  # 3 stages of 3 BasicBlocks: all but the 2 downsampling ones
    _check_values(saved, data, out)

    # --resume with a second seed keeps the finished cell and runs only the new one
    main(["--smoke", "--data-dir", str(data), "--out", str(out), "--seeds", "0,1", "--resume"])
    resumed = json.loads((out / "fashion_mnist_smoke.json").read_text())
    assert [cell[2] for cell in resumed["cells_done"]] == [0, 1]
    assert resumed["records"][: len(saved["records"])] == saved["records"]  # exactly: read back, not computed again
    assert {r["seed"] for r in resumed["records"] if r["method"] != "teacher"} == {0, 1}
    assert sum(r["method"] == "teacher" for r in resumed["records"]) == sum(
        r["method"] == "teacher" for r in saved["records"])


def _check_values(saved: dict, data, out) -> None:
    """The saved figures are what they claim: recomputed from the cached teacher, the latency table and the records."""
    import torch

    from benchmarks.fashion_mnist import CifarResNet, accuracy, cache_dir, load_fashion_mnist, padded

    meta = saved["settings"]["teacher"]
    teacher = CifarResNet(tuple(meta["widths"]), meta["depth_per_stage"])
    teacher.load_state_dict(torch.load(cache_dir() / f"{meta['key']}.pt", weights_only=True))
    test = load_fashion_mnist(data)
    n = saved["settings"]["test_images"]
    labels = torch.from_numpy(test["test_labels"][:n].astype("int64"))
    # exactly: this process computed the saved figure too, on the same thread count (main's --threads), the same
    # weights and images in the same batches; and an accuracy is a count of n images, not a rounded sum
    assert saved["teacher_accuracy"] == accuracy(teacher, padded(test["test_images"])[:n], labels)
    by_method = {r["method"]: r for r in saved["records"]}
    assert by_method["teacher"]["test_accuracy"] == saved["teacher_accuracy"]
    # "none" is PRACTISE's blocks unrecovered: the unrecovered figure every recovery of those blocks reports
    assert by_method["none"]["test_accuracy"] == by_method["practise-adaptors"]["unrecovered_accuracy"]
    assert all(r["test_accuracy"] * n == round(r["test_accuracy"] * n) for r in saved["records"])  # counts of n
    table = saved["latency_table"]
    for sel in saved["selections"]:  # the predicted ratio is the table's, the verdict the measurement's
        saved_ms = sum(table["savings_ms"][b] for b in sel["dropped"])
        assert sel["predicted_ratio"] == pytest.approx(1 - saved_ms / table["full_ms"])
        assert sel["meets_budget"] == (sel["measured_ratio"] <= sel["budget"])
    md = (out / "fashion_mnist_smoke.md").read_text()
    adaptors = by_method["practise-adaptors"]["test_accuracy"]
    assert f"| practise-adaptors | {100 * adaptors:.2f} ± 0.00 (n=1) |" in md
    from PIL import Image

    with Image.open(out / "fashion_mnist_smoke.png") as png:  # one tiny-set size: 5 x 4.2 inches at 110 dpi
        assert png.format == "PNG" and png.size == (550, 462)


def test_fashion_mnist_missing_data_is_a_clear_error(tmp_path):
    from benchmarks.fashion_mnist import load_fashion_mnist

    with pytest.raises(SystemExit, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


# ------------------------------------------------------------------------------- the grid over torchrun ranks

TIMING_FIELDS = ("machine", "timings_s", "wall_s", "peak_rss_mb", "command")  # and a record's recovery_s, eval_s


def _torchrun_grid(args: list[str], home, fail_rank: int | None = None):
    """`torchrun --nproc_per_node 2 -m <the benchmark, with a fixed end-to-end timer> ARGS` (gloo, 1 thread each):
    the finished process (its stderr: torchrun's and both ranks') and each rank's stdout, read from its own file.

    Not the ranks' shared stdout: under PYTHONUNBUFFERED (set on the machines that run this suite) print() writes
    a line's text and its newline in two write() calls, so two ranks logging at once (both start their tiny set
    together) can splice one rank's line into the middle of the other's (seen: rank 1's "== tiny set" line, not
    at the start of a line, so the test did not find it). torchrun --redirects 1 gives each rank a stdout file."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PRACTISE_HOME": str(home)}
    if fail_rank is not None:
        env["PRACTISE_TEST_FAIL_RANK"] = str(fail_rank)
    with tempfile.TemporaryDirectory(dir=home.parent) as logs:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "--log-dir", logs, "--redirects", "1", "-m", "tests.benchmarks.fashion_mnist_fixed_timing", *args]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        files = sorted(Path(logs).glob("*/attempt_*/*/stdout.log"), key=lambda f: int(f.parent.name))
        assert [f.parent.name for f in files] == ["0", "1"], f"one stdout file per rank: {files}"
        return done, [f.read_text() for f in files]


def _deterministic(result: dict) -> dict:
    """The saved result without what timing decides: wall-clock fields, and where the teacher and table came from
    (rank 0 trained and profiled in the first run; the second reads them back). The cells' end-to-end
    measurements are the fixed timer's, so the blocks kept and their recorded ratios are deterministic too."""
    out = {k: v for k, v in result.items() if k not in TIMING_FIELDS}
    out["settings"] = {**result["settings"], "teacher": {k: v for k, v in result["settings"]["teacher"].items()
                                                         if k != "cached"}}
    out["latency_table"] = {k: v for k, v in result["latency_table"].items() if k != "source"}
    out["records"] = [{k: v for k, v in r.items() if k not in ("recovery_s", "eval_s")} for r in result["records"]]
    return out


@pytest.mark.slow
def test_two_ranks_run_the_grid_as_one_process_does(tmp_path, monkeypatch):
    from benchmarks import fashion_mnist
    from tests.benchmarks.fashion_mnist_fixed_timing import fixed_end_to_end

    data, home = _fake_fashion_mnist(tmp_path / "fmnist"), tmp_path / "home"
    args = ["--smoke", "--data-dir", str(data), "--seeds", "0,1"]  # 2 tiny sets: one per rank
    done, (first, second) = _torchrun_grid([*args, "--out", str(tmp_path / "two")], home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0/2: distributed grid over 2 processes (gloo)" in first
    assert "rank 0/2: training the teacher" in first and "training the teacher" not in second
    assert "rank 1/2: waiting for rank 0: the teacher (trained or read from the cache) and the latency table" in second
    assert "rank 1/2: reusing the cached teacher" in second and "rank 1/2: latency table written by rank 0" in second
    ran = [re.findall(r"^(rank \d/2): == tiny set of 50 train images, (seed \d)", log, re.MULTILINE)
           for log in (first, second)]
    assert ran == [[("rank 0/2", "seed 0")], [("rank 1/2", "seed 1")]]  # one tiny set each, never twice
    assert "rank 1/2: waiting for rank 0: the end-to-end measurements" in second  # rank 0 alone times
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "fashion_mnist_smoke.json", "fashion_mnist_smoke.md", "fashion_mnist_smoke.png"]  # rank 0's, once
    assert first.count("# fashion_mnist_smoke: test accuracy") == 1 and "test accuracy" not in second  # rank 0's

    monkeypatch.setenv("PRACTISE_HOME", str(home))  # the teacher rank 0 trained, the table it profiled
    monkeypatch.setattr(fashion_mnist._Grid, "_measure", fixed_end_to_end)
    fashion_mnist.main([*args, "--out", str(tmp_path / "one")])
    two = json.loads((tmp_path / "two" / "fashion_mnist_smoke.json").read_text())
    one = json.loads((tmp_path / "one" / "fashion_mnist_smoke.json").read_text())
    assert {r["seed"] for r in two["records"]} == {None, 0, 1} and two["finished"]
    # the blocks every cell kept, its selections and counts exactly; accuracies, losses and scores within rel 1e-6:
    # two processes against this one (no training layout is timed here, and both run 1 torch thread, so they
    # round alike today, but nothing promises another process the same kernels; an accuracy is a count of
    # 200 test images, so one image more or less is 5e-3 and still fails)
    assert_records_close(_deterministic(two), _deterministic(one), rel=1e-6, abs=1e-12)
    assert (two["latency_table"]["source"], one["latency_table"]["source"]) == ("measured", "store")


@pytest.mark.slow
def test_a_rank_that_fails_stops_the_grid_with_one_line_and_one_process_resumes_it(tmp_path, monkeypatch):
    from benchmarks import fashion_mnist
    from tests.benchmarks.fashion_mnist_fixed_timing import fixed_end_to_end

    data, home, out = _fake_fashion_mnist(tmp_path / "fmnist"), tmp_path / "home", tmp_path / "out"
    args = ["--smoke", "--data-dir", str(data), "--seeds", "0,1", "--sizes", "50,40", "--out", str(out)]
    done, _ = _torchrun_grid(args, home, fail_rank=1)  # 2 rounds: the 50-image tiny sets, then the 40-image ones
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors[0] == "error: rank 1/2: RuntimeError: this rank was told to fail (tiny set of 40, seed 1); the " \
                        "other ranks stop", done.stderr[-3000:]
    assert len(errors) == 2 and errors[1].startswith("error: rank 0/2: ")  # the failing rank's line, then rank 0's
    assert errors[1].endswith(f"the cells finished so far are saved in {out}: rerun with --resume, with any number "
                              "of processes, to run the rest")
    saved = json.loads((out / "fashion_mnist_smoke.json").read_text())
    assert saved["cells_done"] == [[0.78, 50, 0], [0.78, 50, 1]] and not saved["finished"]  # the first round

    monkeypatch.setenv("PRACTISE_HOME", str(home))
    monkeypatch.setattr(fashion_mnist._Grid, "_measure", fixed_end_to_end)
    scored = []
    real = fashion_mnist._score_tiny_set
    monkeypatch.setattr(fashion_mnist, "_score_tiny_set", lambda grid, size, seed: scored.append((size, seed)) or
                        real(grid, size, seed))
    fashion_mnist.main([*args, "--resume"])
    resumed = json.loads((out / "fashion_mnist_smoke.json").read_text())
    assert scored == [(40, 0), (40, 1)]  # the finished cells were skipped
    # the ranks' records exactly: the resumed run read them back from the file, it did not compute them again
    assert resumed["finished"] and resumed["records"][: len(saved["records"])] == saved["records"]
    assert sorted(map(tuple, resumed["cells_done"])) == [(0.78, 40, 0), (0.78, 40, 1), (0.78, 50, 0), (0.78, 50, 1)]


def test_rank_0_lists_the_tiny_sets_in_one_process_order_after_the_resumed_run_and_the_teacher():
    from types import SimpleNamespace

    from benchmarks.fashion_mnist import _merge
    from pipeline.latency.budget import Budget

    def part(seed):
        return {"records": [{"method": "none", "seed": seed}], "selections": [{"seed": seed}],
                "cells_done": [[0.78, 50, seed]]}

    grid = SimpleNamespace(args=SimpleNamespace(methods=["teacher", "none"]), result={"teacher_accuracy": 0.5})
    budgets = [Budget.parse(0.78)]
    empty = {"records": [], "selections": [], "cells_done": []}
    _merge(grid, budgets, empty, {2: part(2), 0: part(0)})  # finished out of order (costliest first)
    assert [r["method"] for r in grid.result["records"]] == ["teacher", "none", "none"]
    assert [r["seed"] for r in grid.result["records"][1:]] == [0, 2]
    assert grid.result["cells_done"] == [[0.78, 50, 0], [0.78, 50, 2]]

    resumed = {"records": [{"method": "teacher", "seed": None}, {"method": "none", "seed": 7}],
               "selections": [{"seed": 7}], "cells_done": [[0.78, 50, 7]]}
    _merge(grid, budgets, resumed, {1: part(1), 0: part(0)})  # the earlier run holds the teacher's record
    assert [r["seed"] for r in grid.result["records"]] == [None, 7, 0, 1]
    assert [s["seed"] for s in grid.result["selections"]] == [7, 0, 1]


def test_the_recorded_command_reruns_with_the_same_arguments_even_with_spaces_in_them(tmp_path):
    """A result names the command that produced it; an argument with spaces must come back as one argument."""
    import shlex

    from benchmarks.fashion_mnist import parse_args

    argv = ["--smoke", "--budgets", "0.78", "--out", str(tmp_path / "a folder with spaces")]
    command = parse_args(argv).command
    assert shlex.split(command) == ["python", "-m", "benchmarks.fashion_mnist", *argv]
