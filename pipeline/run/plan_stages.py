"""The run's precision and selection stages: which precisions are worth deploying here, and the plans.

`precisions.json`: every precision the backend can deploy, timed on the original beside FP32 and checked
for agreement on the selection split, with the kept ones' latency tables. `selection.json`: one plan per
kept precision (blocks that meet the budget under that precision's table, measured end to end), the plan
recovery runs on, and the precision-only plan the report images may deploy instead.
"""

from __future__ import annotations

from pipeline.core import paths
from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import eval_tensors
from pipeline.latency.plans import (
    Plan,
    build_plans,
    choose,
    lossless_precision_plan,
    most_aggressive_plan,
    needing_blocks,
    precision_only_plan,
)
from pipeline.latency.precision import (
    CALIBRATION_IMAGES,
    Precision,
    PrecisionOption,
    deployed_logits,
    survey_precisions,
)
from pipeline.latency.profiling import EndToEnd, measure_end_to_end, measure_variants, obtain_table
from pipeline.latency.selection import (
    best_reachable_ratio,
    score_blocks,
    smallest_budget_text,
)
from pipeline.network.evaluation import compare, predict_logits, prediction_kl
from pipeline.network.surgery import drop_blocks
from pipeline.run.context import RunContext, save_timings, timed
from pipeline.run.records import MixedPrecisionEntry, Precisions, Selection
from pipeline.run.table_stage import complete_latency_table
from profilers import LatencyTable, TableStore


def calibration_images(ctx: RunContext):
    """Tiny-set training images, as the network sees them, for INT8 calibration."""
    return eval_tensors(ctx.train, ctx.prep)[:CALIBRATION_IMAGES]


def stage_precisions(ctx: RunContext, profiler, table: LatencyTable) -> tuple[list[PrecisionOption],
                                                                             dict[str, LatencyTable]]:
    """The kept precisions and the latency tables made so far (the run's own table is the first precision's;
    another precision's table is made when a plan in it needs blocks)."""
    folder = ctx.folder
    if not folder.has("precisions.json"):
        with timed(ctx, "precisions_s"):
            options = _precision_options(ctx, profiler, table)
        table = _with_savings_unless_settled(ctx, profiler, options, table)
        with timed(ctx, "precisions_s", adding=True):  # each block's saving (when needed) is timed apart
            tables = {options[0].precision: table}
            sizes = _resolution_options(ctx, profiler, table, options)
            _refuse_if_unreachable(ctx, options, tables, profiler, sizes)
        _save_precisions(ctx, options, tables, sizes)
        save_timings(ctx)
    saved = Precisions.read(folder)
    return saved.options, saved.tables


def _with_savings_unless_settled(ctx: RunContext, profiler, options: list[PrecisionOption],
                                 table: LatencyTable) -> LatencyTable:
    """The table with each block's saving, unless a precision alone settles the plan (then none is needed)."""
    if table.has_savings:
        return table
    settled = settling_plan(ctx, options, {options[0].precision: table}, profiler)
    if settled is not None:
        ctx.log(f"latency table: no block's saving measured, {settled.name} settles the plan")
        return table
    return complete_latency_table(ctx, profiler, "no precision alone settles the plan")


def _save_precisions(ctx: RunContext, options: list[PrecisionOption], tables: dict[str, LatencyTable],
                     sizes: list[PrecisionOption] | None = None) -> None:
    earlier = Precisions.read_if_there(ctx.folder)
    resolutions = sizes if sizes is not None else earlier.resolutions if earlier else []
    Precisions(options, dict(tables), resolutions).write(ctx.folder)


def saved_resolutions(ctx: RunContext) -> list[PrecisionOption]:
    """The options at smaller input sizes the precision stage measured (none without --min-resolution)."""
    record = Precisions.read_if_there(ctx.folder)
    return record.resolutions if record else []


def _resolution_options(ctx: RunContext, profiler, table: LatencyTable,
                        options: list[PrecisionOption]) -> list[PrecisionOption]:
    """With --min-resolution, each kept precision at each smaller size, measured (resolution.plan_at_sizes)."""
    if ctx.config.min_resolution is None:
        return []
    if not measurable_here(profiler, table):
        ctx.log("input resolution: not planned, the target device is not present here to time smaller inputs")
        return []
    from pipeline.latency.resolution import option_name, plan_at_sizes

    sizes = plan_at_sizes(ctx.loaded.module, profiler, options, ctx.config.min_resolution, ctx.loaded.resolution,
                          ctx.selection, ctx.train, ctx.prep, ctx.progress, ctx.log)
    for option in sizes:
        ctx.log(f"{option_name(option)}: latency ratio {option.latency_ratio:.3f}, agreement "
                f"{100 * option.agreement:.1f}% on the selection split; {'kept' if option.kept else 'dropped'}: "
                f"{option.reason}")
    return sizes


def _precision_options(ctx: RunContext, profiler, table: LatencyTable) -> list[PrecisionOption]:
    base = table.fingerprint.precision
    candidates = type(profiler).auto_precisions if measurable_here(profiler, table) else (base,)
    if ctx.config.precision != "auto" or candidates == (base,):
        why = (f"--precision {base}" if ctx.config.precision != "auto"
               else f"the {table.fingerprint.backend} backend plans in {base} only")
        ctx.log(f"precision: {why}")
        return [PrecisionOption(base, 1.0, table.full.median_ms, 1.0, 0.0, True, why)]
    if profiler.name == "auto":
        from exporters.openvino_ir import INSTALL, offered_precisions, openvino_available

        ctx.log("runtimes: onnxruntime and OpenVINO, every plan timed on one clock against onnxruntime FP32"
                if openvino_available() else
                f"runtimes: onnxruntime only; OpenVINO is not installed ({INSTALL} to plan with it too)")
        if openvino_available() and "openvino-bf16" not in offered_precisions():
            ctx.log("precision openvino-bf16: not offered, this CPU reports no native BF16 to OpenVINO")
    options = survey_precisions(ctx.loaded.module, profiler, candidates, eval_tensors(ctx.selection, ctx.prep),
                                calibration_images(ctx), ctx.progress, ctx.log,
                                ctx.budget.target_ratio(table.full.median_ms))
    for option in options:
        ctx.log(f"precision {option.precision}: latency ratio {option.latency_ratio:.3f}, agreement "
                f"{100 * option.agreement:.1f}% on the selection split; {'kept' if option.kept else 'dropped'}: "
                f"{option.reason}")
    return options


def ensure_tables(ctx: RunContext, precisions: list[str], tables: dict, profiler) -> dict:
    """Latency tables for `precisions` (single-block savings differ by precision), measured or from the store."""
    missing = [p for p in precisions if p not in tables]
    if not missing or profiler is None:
        return tables
    store = TableStore(paths.table_store_dir())
    for precision in missing:
        ctx.log(f"latency table in {precision}")
        tables[precision] = obtain_table(ctx.loaded, ctx.structure, profiler.at_precision(precision), store, None,
                                         ctx.config.reprofile, ctx.progress, ctx.log).table
    return tables


def _refuse_if_unreachable(ctx: RunContext, options: list[PrecisionOption], tables: dict, profiler,
                           sizes: list[PrecisionOption] | None = None) -> None:
    """Refuse a budget no precision can reach, unless the most aggressive plan, measured, meets it (or the original
    at a smaller input size, measured, does).

    Before a precision has its own table, its best is estimated as its ratio times the base table's best.
    """
    budget, base = ctx.budget, tables[options[0].precision]
    kept = [o for o in options if o.kept]
    reachable = min(o.latency_ratio * best_reachable_ratio(tables.get(o.precision, base)) for o in kept)
    if budget.target_ratio(base.full.median_ms) >= reachable:
        return
    if any(precision_only_plan(o, budget, base.full.median_ms).meets_budget for o in sizes or [] if o.kept):
        return
    fastest = min(kept, key=lambda o: o.latency_ratio)
    here = measurable_here(profiler, base)
    ensure_tables(ctx, [fastest.precision], tables, profiler if here else None)
    measured = most_aggressive_plan(options, tables, budget, plan_measurer(ctx, profiler) if here else None)
    if measured is not None and measured.meets_budget:
        ctx.log(f"the tables predict {reachable:.3f} at best, but the most aggressive plan measured "
                f"{measured.measured_ratio:.3f}: going on")
        return
    what = (f"predicted to keep {reachable:.3f}" if measured is None
            else f"predicted to keep {reachable:.3f} and measured at {measured.measured_ratio:.3f}")
    raise UsageError(
        f"latency budget {budget.describe()} cannot be reached: dropping every candidate block in the fastest kept "
        f"precision is {what} of the original latency ({base.full.median_ms:.3f} ms). Choose a budget of at least "
        f"{smallest_budget_text(reachable if measured is None or measured.measured_ratio is None else measured.measured_ratio)}."
    )


def measurable_here(profiler, table: LatencyTable) -> bool:
    """Whether plans can be measured here: the table's device and settings are this profiler's."""
    return profiler is not None and table.fingerprint == profiler.fingerprint()


def plan_measurer(ctx: RunContext, profiler):
    """Measure a plan's network in its precision beside the original in the run's base precision."""
    teacher = ctx.loaded.module
    base = profiler.settings.precision

    def measure(precision: str, dropped: list[str]) -> EndToEnd:
        network = drop_blocks(teacher, dropped)
        if precision == base:
            return measure_end_to_end(teacher, network, profiler, ctx.progress)
        return measure_end_to_end(profiler.prepared(teacher), network, profiler.at_precision(precision), ctx.progress)

    return measure


def settling_plan(ctx: RunContext, options: list[PrecisionOption], tables: dict, profiler) -> Plan | None:
    """The precision-only plan that makes depth plans pointless (plans.lossless_precision_plan), unless
    --depth-plans always; None when depth plans are to be built."""
    if ctx.config.depth_plans == "always":
        return None
    base_table = tables[options[0].precision]
    same_device = measurable_here(profiler, base_table)
    return lossless_precision_plan(options, ctx.budget, base_table.full.median_ms,
                                   _clear_ratio(ctx, base_table, profiler if same_device else None))


def stage_plans(ctx: RunContext, options: list[PrecisionOption], tables: dict, recoverability: dict,
                profiler) -> None:
    """Build and measure a plan per kept precision; choose the one to recover and the precision-only rival."""
    folder = ctx.folder
    if folder.has("selection.json"):
        return
    base_table = tables[options[0].precision]
    same_device = measurable_here(profiler, base_table)
    settled = settling_plan(ctx, options, tables, profiler)
    if settled is not None:
        _save_settled_selection(ctx, options, settled, tables, base_table)
        return
    with timed(ctx, "selection_and_measurement_s"):
        clear = _clear_ratio(ctx, base_table, profiler if same_device else None)
        tables = ensure_tables(ctx, needing_blocks(options, ctx.budget, base_table, clear), tables,
                               profiler if same_device else None)
        _save_precisions(ctx, options, tables)
        plans = build_plans(options, tables, recoverability, ctx.budget, ctx.config.selector,
                            plan_measurer(ctx, profiler) if same_device else None, ctx.config.max_budget_attempts,
                            ctx.log, clear)
        plans += sized_plans(saved_resolutions(ctx), ctx.budget, base_table.full.median_ms)
        if not plans:
            plans = [_aggressive_plan_or_refuse(ctx, options, tables, profiler if same_device else None)]
        _measure_agreement(ctx, plans)
        chosen, precision_only, why = choose(plans, _clear_ratio(ctx, base_table, profiler if same_device else None))
    ctx.log(f"plans: {why}")
    _selection_record(ctx, plans, chosen, precision_only, why, tables, base_table, recoverability).write(folder)
    save_timings(ctx)


def sized_plans(sizes: list[PrecisionOption], budget, fp32_full_ms: float) -> list[Plan]:
    """The precision-only plans at smaller input sizes that meet the budget (measured by the resolution survey)."""
    plans = [precision_only_plan(o, budget, fp32_full_ms) for o in sizes if o.kept]
    return [p for p in plans if p.meets_budget]


def _save_settled_selection(ctx: RunContext, options: list[PrecisionOption], settled: Plan, tables: dict,
                            base_table: LatencyTable) -> None:
    """selection.json when a precision alone settles the plan: every precision-only plan that meets the budget, no
    plan with dropped blocks, and why."""
    fp32_ms = base_table.full.median_ms
    plans = [p for p in (precision_only_plan(o, ctx.budget, fp32_ms) for o in options[1:] if o.kept) if p.meets_budget]
    why = (f"{settled.name} meets the budget clearly (measured {settled.measured_ratio:.3f}) and changes no prediction "
           "on the selection split, so dropping blocks could at best tie it: scoring, depth plans and recovery were "
           "skipped (--depth-plans always builds them anyway)")
    ctx.log(f"plans: {why}")
    best = max(plans, key=lambda p: (p.agreement or 0.0, -(p.kl or 0.0)))
    _selection_record(ctx, plans, None, best, why, tables, base_table, {}).write(ctx.folder)
    save_timings(ctx)


def _clear_ratio(ctx: RunContext, base_table: LatencyTable, profiler) -> float | None:
    """The ratio a plan must be measured under to meet the budget beyond doubt: the target less the standard
    error the profiler's stop rule allows a measured ratio (half its ratio tolerance). None when nothing was
    measured here."""
    if profiler is None:
        return None
    return ctx.budget.target_ratio(base_table.full.median_ms) - latency_margin(ctx, profiler)


def latency_margin(ctx: RunContext, profiler) -> float:
    """How far under the target a plan must be measured to meet the budget beyond doubt: --latency-margin, else the
    standard error the profiler's stop rule allows a measured ratio (half its ratio tolerance)."""
    if ctx.config.latency_margin is not None:
        return ctx.config.latency_margin
    return 0.5 * profiler.settings.ratio_tolerance


def stage_mixed_precision(ctx: RunContext, profiler) -> None:
    """For each INT8 plan (onnxruntime's schemes, OpenVINO's NNCF INT8) that may deploy (the chosen one, the
    precision-only one) and measured well under the budget, keep the end layers in FP32 that bring it closest to the
    original (measured: every rung's latency in one interleaved measurement, KL and agreement on the selection
    split). Recorded in selection.json under "mixed_precision", one entry per plan tried."""
    from pipeline.latency.mixed_precision import MixedOption, spend_slack, worth_trying

    selection = Selection.read(ctx.folder)
    if selection.mixed_precision is not None:
        return
    may_deploy = [selection.chosen, selection.precision_only]
    plans = [p for i, p in enumerate(may_deploy) if p is not None and all(p is not q for q in may_deploy[:i])]
    # a plan at a smaller input size keeps its precision whole: the ladder is measured at the model's own size
    plans = [p for p in plans if p.resolution is None and worth_trying(p.precision, p.measured_ratio,
                                                                       selection.target_ratio)]
    entries = []
    if profiler is not None:
        images = eval_tensors(ctx.selection, ctx.prep)
        reference = predict_logits(ctx.loaded.module, images) if plans else None
        with timed(ctx, "mixed_precision_s"):
            for plan in plans:
                assert reference is not None  # made above whenever there is a plan
                assert plan.agreement is not None and plan.kl is not None  # every plan's, by _measure_agreement
                plain = MixedOption(0, [], plan.measured_ratio, plan.agreement, plan.kl, True)
                # a rung must be clearly under the budget, as plans must (a rung measured at 0.395 against 0.4
                # shipped a file timed at 0.486 on a busy machine)
                limit = selection.target_ratio - latency_margin(ctx, profiler)
                result = spend_slack(drop_blocks(ctx.loaded.module, plan.dropped), plan.precision,
                                     calibration_images(ctx), images, reference,
                                     _file_measurer(ctx, profiler, plan.precision), limit, plain, ctx.log)
                entry = MixedPrecisionEntry.from_dict({"precision": plan.precision, "dropped": plan.dropped, **result})
                ctx.log(f"mixed precision ({plan.name}): {entry.why}")
                entries.append(entry)
    selection.mixed_precision = entries
    selection.write(ctx.folder)
    save_timings(ctx)


def _file_measurer(ctx: RunContext, profiler, precision: str):
    """Deployed INT8 files' latency ratios, all measured in one interleaved measurement beside the FP32 original."""
    teacher = ctx.loaded.module

    def measure(files: dict) -> dict:
        variants = {"original": profiler.prepared(teacher), **{f"rung{key}": path for key, path in files.items()}}
        rounds = measure_variants(variants, profiler.at_precision(precision), ctx.progress, reference="original")
        return {key: rounds.ratio(f"rung{key}", "original") for key in files}

    return measure


def _aggressive_plan_or_refuse(ctx: RunContext, options, tables, profiler) -> Plan:
    plan = most_aggressive_plan(options, tables, ctx.budget, plan_measurer(ctx, profiler) if profiler else None)
    if plan is None:
        raise UsageError(f"latency budget {ctx.budget.describe()} cannot be reached by any plan; choose a larger one.")
    return plan


def _measure_agreement(ctx: RunContext, plans: list[Plan]) -> None:
    """Each plan's network, unrecovered and in its precision, against the original on the selection split."""
    teacher = ctx.loaded.module
    images = eval_tensors(ctx.selection, ctx.prep)
    reference = predict_logits(teacher, images)
    calibration = calibration_images(ctx)
    for plan in plans:
        if plan.agreement is not None:
            continue
        logits = deployed_logits(drop_blocks(teacher, plan.dropped), plan.precision, images, calibration)
        plan.agreement = compare(logits, reference, None).top1_agreement
        plan.kl = prediction_kl(logits, reference)


def _selection_record(ctx: RunContext, plans: list[Plan], chosen: Plan | None, precision_only: Plan | None,
                      why: str, tables: dict, base_table: LatencyTable, recoverability: dict) -> Selection:
    recovered = chosen or Plan(base_table.fingerprint.precision, [], 1.0, note="no plan with dropped blocks")
    attempts = recovered.attempts or [{"attempt": 1, "dropped": recovered.dropped, "measured": None,
                                       "predicted_ratio": recovered.predicted_ratio,
                                       "predicted_ms": recovered.predicted_ratio * base_table.full.median_ms}]
    if attempts[0].get("measured"):
        _warn_if_the_table_disagrees(ctx, base_table, attempts[0]["measured"]["original"]["median_ms"], attempts[0])
    scores = score_blocks(recoverability, tables.get(recovered.precision, base_table)) if recoverability else []
    return Selection(
        budget=ctx.budget.describe(), target_ratio=ctx.budget.target_ratio(base_table.full.median_ms),
        selector=ctx.config.selector, scores=scores, dropped=recovered.dropped, precision=Precision(recovered.precision),
        attempts=attempts,
        chosen_attempt=next((i for i, a in enumerate(attempts) if a["dropped"] == recovered.dropped), 0),
        plans=plans, chosen_plan=plans.index(chosen) if chosen in plans else None,
        precision_plan=plans.index(precision_only) if precision_only in plans else None, why=why)


# the original measured end to end this far from the table's figure means the table was made in other conditions
TABLE_DISAGREEMENT_TO_WARN = 0.3  # the H100 eager table differed by 22% with accurate ratios; a slow VM by 37%


def _warn_if_the_table_disagrees(ctx: RunContext, table: LatencyTable, measured_ms: float, record: dict) -> None:
    """Say so when the original network now measures far from the table's latency (found: a table profiled
    while the VM was slow said 7.75 ms for an original that measured 4.90 ms minutes later)."""
    difference = measured_ms / table.full.median_ms - 1
    if abs(difference) <= TABLE_DISAGREEMENT_TO_WARN:
        return
    message = (f"warning: the original network measures {measured_ms:.3f} ms now and {table.full.median_ms:.3f} ms in the "
               f"latency table ({100 * difference:+.0f}%): the table was measured in other conditions (a busy or "
               "throttled machine?), so its per-block savings may be off. The selection is corrected by measurement; "
               "to rebuild the table, rerun with --reprofile (and --out for a new run folder).")
    ctx.log(message)
    record["table_disagreement"] = message
