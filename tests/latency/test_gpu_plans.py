"""GPU plans in FP16 and BF16 beside depth, chosen from the recorded H100 FP32 table and a SYNTHETIC half-precision
survey (tests/latency/data/gpu_survey_h100_fixture.json says what is measured and what is not): no GPU, no timing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from pipeline.latency.budget import Budget
from pipeline.latency.mixed_precision import worth_trying
from pipeline.latency.plans import build_plans, choose, lossless_precision_plan, needing_blocks
from pipeline.latency.precision import PrecisionOption, keep_precisions
from profilers import LatencyTable, backend_class
from profilers.stats import summarize

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = json.loads((Path(__file__).parent / "data" / "gpu_survey_h100_fixture.json").read_text())
RECOVERABILITY = {f"_blocks.{i}": 0.1 * n for n, i in enumerate((2, 4, 6, 7, 9, 10, 12, 13, 14), start=1)}


def fp32_table() -> LatencyTable:
    return LatencyTable.from_dict(json.loads((ROOT / FIXTURE["fp32_table"]).read_text()))


def scaled(table: LatencyTable, precision: str, ratio: float) -> LatencyTable:
    """The fixture's half-precision table: the FP32 table's latencies times the precision's (synthetic) ratio."""
    return replace(table, fingerprint=replace(table.fingerprint, precision=precision),
                   full=summarize([table.full.median_ms * ratio] * 3),
                   savings={b: summarize([s.median_ms * ratio] * 3) for b, s in table.savings.items()})


def survey() -> tuple[list[PrecisionOption], dict[str, LatencyTable]]:
    base = fp32_table()
    options = keep_precisions([PrecisionOption(o["precision"], o["latency_ratio"], base.full.median_ms
                                               * o["latency_ratio"], o["agreement"], o["kl"]) for o in FIXTURE["survey"]])
    tables = {o.precision: base if o.precision == "fp32" else scaled(base, o.precision, o.latency_ratio)
              for o in options}
    return options, tables


def test_every_gpu_backend_surveys_the_precisions_it_can_deploy():
    assert backend_class("gpu", "torch").auto_precisions == ("fp32", "fp16", "bf16")
    assert backend_class("gpu", "inductor").auto_precisions == ("fp32", "fp16", "bf16")
    assert backend_class("gpu", "onnxruntime").auto_precisions == ("fp32", "fp16")
    assert backend_class("gpu", "tensorrt").auto_precisions == ("fp32", "fp16", "int8")


def test_at_the_cards_budget_fp16_alone_settles_the_plan():
    options, tables = survey()
    kept = {o.precision for o in options if o.kept}
    assert kept == {"fp32", "fp16"}  # BF16 is about as fast and further from the original
    settled = lossless_precision_plan(options, Budget.parse("0.78"), tables["fp32"].full.median_ms, 0.77)
    assert settled is not None and settled.precision == "fp16" and settled.dropped == []
    assert worth_trying("fp16", settled.measured_ratio, 0.78)  # 0.6 leaves slack: the FP32 end-layer ladder runs


def test_at_half_the_latency_fp16_drops_fewer_blocks_than_fp32():
    options, tables = survey()
    budget = Budget.parse("0.5")
    assert needing_blocks(options, budget, tables["fp32"]) == ["fp32", "fp16"]
    plans = {p.precision: p for p in build_plans(options, tables, RECOVERABILITY, budget, "greedy", None, 3)}
    assert set(plans) == {"fp32", "fp16"}
    assert 0 < len(plans["fp16"].dropped) < len(plans["fp32"].dropped)
    assert plans["fp16"].predicted_ratio <= 0.5 and plans["fp32"].predicted_ratio <= 0.5
    chosen, precision_only, _ = choose(list(plans.values()))
    assert precision_only is None  # no precision alone reaches 0.5
    assert chosen is not None and chosen.dropped
