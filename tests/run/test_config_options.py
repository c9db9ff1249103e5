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


def test_each_choice_of_pipeline_run_is_read_from_what_the_library_accepts():
    from pipeline.latency.selection import SELECTORS
    from pipeline.recovery.confident_views import VIEW_SOURCES
    from pipeline.recovery.mixing import MIXING
    from pipeline.recovery.recover import METHODS
    from pipeline.run.config import DEPTH_PLANS, REFERENCE_BACKENDS
    from pipeline.run.presets import PRESETS
    from pipeline.run.quantization_aware import SETTING_VALUES

    accepted = {"preset": list(PRESETS), "selector": SELECTORS, "recovery_method": METHODS, "recovery_mixing": MIXING,
                "recovery_views": VIEW_SOURCES, "recovery_quantization_aware": SETTING_VALUES,
                "reference_backend": list(REFERENCE_BACKENDS), "depth_plans": DEPTH_PLANS}
    options = {option.name: option for option in run.params}
    for name, values in accepted.items():
        assert list(options[name].type.choices) == list(values), name


def test_a_setting_outside_its_choices_is_refused_in_one_line_by_the_library_too(tmp_path):
    import pytest

    from pipeline.core.errors import UsageError
    from pipeline.run.context import prepare

    with pytest.raises(UsageError, match="--depth-plans 'sometimes' is not understood; choose one of: auto, always"):
        prepare(RunConfig(depth_plans="sometimes", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
