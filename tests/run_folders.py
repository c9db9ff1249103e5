"""Finished run folders of the tiny ResNet, made once per test module by the real `pipeline run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from tests.cli.invoke import FAST_RUN, TINY
from tests.conftest import with_even_savings, write_images


def run_args(base: Path, budget: str = "0.9", name: str = "run", extra: tuple[str, ...] = ()) -> list[str]:
    """`pipeline run` arguments for the tiny ResNet on images written under base (once)."""
    data = base / "tiny" if (base / "tiny").exists() else write_images(base / "tiny", 16)
    val = base / "val" if (base / "val").exists() else write_images(base / "val", 9, seed=1, classes=3)
    return ["run", "--model", TINY, *FAST_RUN, "--backend", "torch", "--data", str(data), "--val", str(val),
            "--latency-budget", budget, "--out", str(base / name), *extra]


def make_finished_run(base: Path, budget: str = "0.9", name: str = "run", extra: tuple[str, ...] = ()) -> Path:
    """Run the whole pipeline on written images into base/name (its own PRACTISE_HOME under base), with the
    latency table's savings made even so the budget is always reachable."""
    args = run_args(base, budget, name, extra)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRACTISE_HOME", str(base / "home"))
        with_even_savings(patch)  # a busy machine's table cannot make the budget unreachable
        try:
            main(args)
        except SystemExit as exc:
            assert exc.code == 0, f"pipeline run exited {exc.code}"
    assert (base / name / "report.json").exists()
    return base / name
