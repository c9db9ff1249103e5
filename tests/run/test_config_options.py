"""One source for each run setting's default: RunConfig's field, which `pipeline run`'s option must repeat."""

from __future__ import annotations

from dataclasses import MISSING, fields

from pipeline.cli.run import run
from pipeline.run.config import _ADDED_LATER, RunConfig

INTERNAL = {"max_budget_attempts"}  # library-only settings (benchmarks, tests): no option on purpose


def _default(option):
    value = option.default
    if option.is_flag and not isinstance(value, bool):  # click leaves a flag's default unset: off
        return False
    return tuple(value) if isinstance(value, list) else value


def test_every_setting_has_its_option_with_the_same_default():
    options = {option.name: option for option in run.params}
    for field in fields(RunConfig):
        if field.name in INTERNAL:
            assert field.name not in options
            continue
        assert field.name in options, f"RunConfig.{field.name} has no `pipeline run` option"
        default = field.default if field.default is not MISSING else field.default_factory()  # type: ignore[misc]
        assert _default(options[field.name]) == default, field.name


def test_settings_added_later_are_fields_and_leave_the_identity_alone_at_their_defaults():
    names = {f.name for f in fields(RunConfig)}
    assert set(_ADDED_LATER) <= names
    identity = RunConfig().identity()
    assert not set(_ADDED_LATER) & set(identity)
    assert RunConfig(min_resolution=160).identity()["min_resolution"] == 160
