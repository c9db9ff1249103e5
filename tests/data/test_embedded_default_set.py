"""The embedded default tiny set: the same images on every machine, and a missing extra named."""

import sys

import pytest

from pipeline.core.errors import UsageError
from pipeline.data import embedded
from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """A tool home without a built embedded set, so the build really runs."""
    monkeypatch.setenv("PRACTISE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_missing_default_data_extra_names_the_extra(capsys, fresh_home, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # as if installed without '.[default-data]'
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "pip install '.[default-data]'")
    assert "skimage" in err


def test_no_image_is_skipped_when_a_loader_would_fetch_it(fresh_home, monkeypatch):
    import skimage.data

    def offline(*args, **kwargs):
        raise ConnectionError("no network")  # an image scikit-image would download on demand

    monkeypatch.setattr(skimage.data, "astronaut", offline)
    train, val = embedded.embedded_tiny_set()
    names = sorted(p.name for p in train.iterdir())
    assert len(names) == 54 and "skimage_astronaut.png" in names
    assert sum(1 for _ in val.rglob("*.jpg")) == 20


def test_an_image_missing_from_its_package_stops_the_build_naming_the_package(fresh_home, monkeypatch):
    monkeypatch.setitem(embedded.SKIMAGE_PHOTOS, "astronaut", "no_such_image.png")
    with pytest.raises(UsageError, match="'skimage' does not ship no_such_image.png"):
        embedded.embedded_tiny_set()
    assert not (fresh_home / "embedded-tiny-set" / ".complete").exists()


def test_any_missing_optional_module_names_its_extra(capsys, monkeypatch):
    import importlib

    cli_main = importlib.import_module("pipeline.cli.main")

    def needs_sklearn(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'sklearn'", name="sklearn")

    monkeypatch.setattr(cli_main.cli, "main", needs_sklearn)
    code, _, err = invoke(capsys, "blocks", "--model", TINY)
    assert_clean_error(code, err, 2, "pip install '.[default-data]'")
