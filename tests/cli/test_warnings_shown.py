"""Warnings are shown: no blanket filter in the CLI or the tests, only named ones where they arise."""

import warnings

import pytest

from tests.cli.invoke import TINY, invoke
from tests.conftest import ROOT


def test_the_cli_installs_no_blanket_warning_filter(capsys):
    with warnings.catch_warnings():
        warnings.resetwarnings()
        code, _, _ = invoke(capsys, "blocks", "--model", TINY, "--resolution", "32", "--json")
        blanket = [f for f in warnings.filters if f[0] == "ignore" and f[1] is None and f[2] is Warning]
    assert code == 0
    assert blanket == []


def test_the_test_settings_ignore_no_whole_warning_category():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert not [f for f in settings.get("filterwarnings", []) if f.startswith("ignore::")]


def test_torchscripts_deprecation_is_the_only_warning_the_exporters_silence():
    from exporters.formats import _ignore_jit_deprecation

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ignore_jit_deprecation()
        warnings.warn("`torch.jit.trace` is deprecated. Please switch to `torch.compile` or `torch.export`.", FutureWarning)
        warnings.warn("`torch.export.export` changed its defaults", FutureWarning)
        warnings.warn("`torch.jit.trace` is deprecated", UserWarning)
    assert [str(w.message) for w in caught] == ["`torch.export.export` changed its defaults",
                                               "`torch.jit.trace` is deprecated"]
