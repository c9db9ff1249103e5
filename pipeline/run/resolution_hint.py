"""What a smaller input would have given, when the run was not allowed to plan one and its best plan is weak.

Input size is a lever only the user may pull (`--min-resolution`: the deployment must feed smaller images). When
the best plan misses the budget or agrees poorly, the run measures one smaller size (about three quarters of the
model's own) in the fastest kept precision, beside the original, and the report says what it would have given and
which option plans it. Recorded in selection.json under "resolution_hint" (null when no hint was needed).
"""

from __future__ import annotations

from pipeline.latency.precision import PrecisionOption
from pipeline.latency.resolution import hint_size, option_name, survey_resolutions
from pipeline.run.context import RunContext, save_timings, timed
from pipeline.run.records import Selection

# below this top-1 agreement on the selection split (before recovery) the best plan "agrees poorly"
POOR_AGREEMENT = 0.85
def needs_hint(selection: Selection) -> str | None:
    """Why a hint is worth its measurement (the best plan misses the budget or agrees poorly), or None."""
    meeting = [p for p in selection.plans if p.meets_budget]
    if not meeting:
        return "no plan meets the budget"
    best = max(p.agreement or 0.0 for p in meeting)
    if best < POOR_AGREEMENT:
        return f"the best plan that meets the budget agrees {100 * best:.1f}% on the selection split"
    return None


def stage_resolution_hint(ctx: RunContext, options: list[PrecisionOption], profiler) -> None:
    """Measure the hint once, when the run did not plan sizes itself and needs one (see module docstring)."""
    selection = Selection.read(ctx.folder)
    if selection.hint_made:
        return
    why = needs_hint(selection) if ctx.config.min_resolution is None and profiler is not None else None
    hint = None
    if why is not None and not profiler.runs_files:
        ctx.log(f"input resolution: {why}, but the {profiler.name} backend times networks at one input size only; "
                "no smaller size was measured for the report")
    elif why is not None:
        kept = [o for o in options if o.kept]
        fastest = min(kept, key=lambda o: o.latency_ratio)
        size = hint_size(ctx.loaded.resolution)
        ctx.log(f"input resolution: {why}; measuring the original at {size} px in {fastest.precision} for the "
                "report (the run does not plan smaller inputs without --min-resolution)")
        with timed(ctx, "resolution_hint_s"):
            option = survey_resolutions(ctx.loaded.module, profiler, [fastest.precision], [size], ctx.selection,
                                        ctx.train, ctx.prep, ctx.progress, ctx.log)[0]
        hint = option.to_dict() | {"why": why, "model_resolution": ctx.loaded.resolution}
        ctx.log(f"{option_name(option)}: latency ratio {option.latency_ratio:.3f}, agreement "
                f"{100 * option.agreement:.1f}% on the selection split (--min-resolution {size} plans it)")
    selection.resolution_hint, selection.hint_made = hint, True
    selection.write(ctx.folder)
    save_timings(ctx)


def hint_line(hint: dict | None) -> str | None:
    """The report's sentence for a measured hint."""
    if not hint:
        return None
    return (f"Input size, not planned: {hint['why']}. The original fed {hint['resolution']} px images (the model's own "
            f"is {hint['model_resolution']} px) in {hint['precision']} measured {hint['latency_ratio']:.3f} of the "
            f"original's latency with {100 * hint['agreement']:.1f}% top-1 agreement on the selection split; "
            f"`--min-resolution {hint['resolution']}` plans with smaller inputs (the deployment must then feed them).")
