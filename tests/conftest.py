"""Shared fixtures: an isolated tool home, image folders written by the tests, GPU skipping."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch.cuda.is_available() is False on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# the README's test command runs two pytest-xdist workers on a 2-core machine: one torch thread each (and in the
# subprocesses they start), so two tests never fight over the cores (a test run alone, without -n, keeps two)
TORCH_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the runs tests start as subprocesses train on one thread too


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Latency tables and the embedded set go to a per-session folder, never the user's cache."""
    home = tmp_path_factory.getbasetemp() / "practise-home"
    monkeypatch.setenv("PRACTISE_HOME", str(home))
    torch.set_num_threads(TORCH_THREADS)
    return home


@pytest.fixture(autouse=True)
def no_reselection_on_real_timing(request, monkeypatch):
    """A run takes the next candidate when its shipped file's measured ratio misses the budget; in tests that ratio
    is real timing of a tiny network on a shared machine, so only tests marked `reselects` (which record the timing)
    let a run reselect, and no other test's decisions depend on this machine's speed."""
    if request.node.get_closest_marker("reselects") is None:
        from pipeline.run import runner

        monkeypatch.setattr(runner, "reselect_after_a_miss", lambda ctx: False)


def write_images(folder: Path, count: int, size: int = 40, seed: int = 0, classes: int | None = None) -> Path:
    """Write `count` random-texture PNGs (ImageFolder layout with numeric class folders when `classes`)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        target = folder / str(i % classes) if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        base = rng.random((1, 1, 3)) * 255
        pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(target / f"img_{i:03d}.png")
    return folder


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_images(tmp_path / "tiny", 16)


@pytest.fixture
def labelled_folder(tmp_path) -> Path:
    return write_images(tmp_path / "val", 9, seed=1, classes=3)


def with_even_savings(monkeypatch) -> None:
    """Latency tables really measured, then every block's saving even (tests/recorded_tables.py: `evened`)."""
    from pipeline.latency import profiling
    from tests.recorded_tables import evened

    monkeypatch.setattr(profiling, "profile_candidates", evened(profiling.profile_candidates))


@pytest.fixture
def even_savings(monkeypatch):
    """`with_even_savings` for one test."""
    with_even_savings(monkeypatch)


@pytest.fixture(params=["not installed", "type stubs only"])
def without_tensorrt(request, monkeypatch):
    """TensorRT absent whatever this machine has: no module at all, or only tensorrt-stubs' empty namespace
    (what `pip install tensorrt-stubs` leaves, as the README's test command does)."""
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", None if request.param == "not installed"
                        else types.ModuleType("tensorrt"))
    return request.param


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """One finished run folder of the tiny ResNet for the report tests; read it, or copy it to change it."""
    from tests.run_folders import make_finished_run

    return make_finished_run(tmp_path_factory.mktemp("finished"))
