"""report.json (everything, machine-readable) and report.md (what a person reads first)."""

from __future__ import annotations

from pipeline.core.clock import now_iso
from pipeline.latency.budget import WITHIN_NOISE
from pipeline.latency.precision import PrecisionOption
from pipeline.run.html_page import markdown_to_html
from pipeline.run.plots import markdown_section, write_plots
from pipeline.run.records import (ArtefactLatency, DeployedNetwork, Evaluation, Exports, ImageSetFigures, Recovery,
                                  Selection)
from pipeline.run.resolution_hint import hint_line
from pipeline.run.runfolder import RunFolder
from pipeline.run.summary import DeployedSummary, LatencySummary, RunRecords

_STAGE_FILES = {
    "settings": "settings.json", "data": "data.json", "candidates": "candidates.json",
    "latency_table": "latency_table.json", "precisions": "precisions.json", "recoverability": "recoverability.json",
    "selection": "selection.json", "deployed": "dropped_blocks.json",
    "recovery": "recovery.json", "evaluation": "evaluation.json", "export": "export.json",
    "reselection": "reselection.json",
}


def collect(folder: RunFolder) -> dict:
    data = {name: folder.read_json(f) for name, f in _STAGE_FILES.items() if folder.has(f)}
    if "recovery" in data:  # the loss curve is long; the report keeps a summary, recovery.json the whole
        recovery = data["recovery"]
        losses = recovery.pop("losses", [])
        recovery |= {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                     "steps_run": len(losses)}
    return data


def write_report(folder: RunFolder, timings: dict) -> None:
    """report.json: every stage file (`collect`) and two summaries, `latency` (the recovered plan's prediction and
    measurement) and `deployed` (what ships); report.md and report.html, rendered from it as typed records."""
    data = collect(folder)
    selection = Selection.read(folder)
    latency = LatencySummary.of(data["latency_table"], selection)
    deployed = DeployedSummary.of(DeployedNetwork.read_if_there(folder) or DeployedNetwork(dropped=[]),
                                  Evaluation.read_if_there(folder), data.get("candidates", {}).get("resolution"),
                                  selection, Exports.read(folder))
    plots = write_plots(folder)
    data |= {"latency": latency.to_dict(), "deployed": deployed.to_dict(), "timings_s": timings,
             "finished_at": now_iso(), "plots": plots}
    records = RunRecords.from_report(data, folder.path)
    markdown = render_records(records) + "\n".join(markdown_section(plots)) + "\n"
    folder.write_text("report.md", markdown)
    folder.write_text("report.html", markdown_to_html(markdown, f"Compression report: {records.settings['model']}",
                                                      folder.path))
    folder.write_json("report.json", data)  # written last: its presence marks the run complete


BLEND_EXPLAINED = (
    "Blends (`--recovery-blends`) average the recovered and unrecovered weights: `halfway` keeps half of "
    "recovery's change."
)

# what the benchmarks showed (benchmarks/results/lite0_out_of_domain_seeds.md): recovery moves agreement toward
# the tiny set's kind of image, so report images drawn from the tiny set favour it
TINY_SET_REPORT_CAUTION = (
    "These report images come from the tiny set itself. Recovery moves agreement toward the tiny set's kind of "
    "image (on the EfficientNet-Lite0 benchmark: a few points up on images like the tiny set, up to 8 points "
    "down on unlike ones), so if the deployment's images differ from the tiny set, this choice can deploy a "
    "network that agrees less on them. Pass --val with a few images from the deployment (labels optional) to "
    "make the choice on them."
)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ms(x) -> str:
    return "n/a" if x is None else f"{x:.3f} ms"


def _ratio(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _artefact_latency(latency: ArtefactLatency | None) -> str:
    if latency is None:
        return "not measured (exported by an earlier version)"
    if not latency.measured:
        return f"not measured: {latency.reason}"
    verdict = "**meets**" if latency.meets_budget else "**MISSES**"
    return (f"{_ms(latency.artefact_ms)} vs {_ms(latency.original_ms)} ({latency.backend}, "
            f"{latency.precision}): ratio {latency.ratio:.3f}, {verdict} target {latency.target_ratio:.3f}")


def shipped_verdict(latency: ArtefactLatency | dict | None, user_margin: float | None = None) -> str:
    """The budget verdict of the shipped file's own measurement, saying when it is within the measurement's noise
    (or inside the margin the user asked plans to keep, --latency-margin). A dict is export.json's "latency"."""
    if isinstance(latency, dict):
        latency = ArtefactLatency.from_dict(latency) if latency else None
    if latency is None or not latency.measured or latency.ratio is None or latency.target_ratio is None:
        return "its latency was not measured here" + (f" ({latency.reason})" if latency and latency.reason else "")
    ratio, target = latency.ratio, latency.target_ratio
    margin = target - ratio
    verdict = "meets" if margin >= 0 else "MISSES"
    sure = (f", within the measurement's precision (±{WITHIN_NOISE}) of the target: another measurement may land on "
            "the other side" if abs(margin) < WITHIN_NOISE else "")
    if not sure and user_margin and 0 <= margin < user_margin:
        sure = f", but by less than the --latency-margin {user_margin:g} asked for"
    return f"measured at {ratio:.3f} of the original's latency, {verdict} the target {target:.3f}{sure}"


def _shipped_section(records: RunRecords, deployed: DeployedSummary | None) -> list[str]:
    """What ships, first: the file, its runtime and precision, its own measured ratio and agreement, how to load it."""
    if deployed is None:  # a report rendered from records without a deployment summary (older folders)
        return []
    shipped = records.exports.shipped
    form = deployed.form.describe()
    name = deployed.network or form
    lines = ["## What ships", "", f"**{name}**" + ("." if name == form else f": {form}.")]
    report = records.evaluation.report
    if deployed.network in report.agreements:
        lines.append(f"Top-1 agreement with the original on the {report.images} report images: "
                     f"{_pct(report.top1(deployed.network))}.")
    if deployed.input_resolution:
        lines += ["", _size_changed(records.data, deployed.input_resolution, deployed.model_resolution)]
    if shipped is not None:
        user_margin = records.settings.get("latency_margin")
        lines += ["", f"File `{shipped.path}` ({shipped.format}): {shipped_verdict(shipped.latency, user_margin)}."]
    missed = reselection_lines(records.reselection)
    if missed:
        lines += ["", "Files timed after export that missed the budget:", "", *missed]
    if shipped is not None and shipped.loading_snippet:
        lines += ["", "Load and run it as it was timed:", "", "```python", shipped.loading_snippet.rstrip(), "```"]
    return lines + [""]


def _size_changed(data: dict, size: int, native: int | None) -> str:
    """The plain warning a deployment at a smaller input size needs: what to feed the file now (data.json says how
    the images are prepared)."""
    prep = data.get("preprocessing", {})
    crop = prep.get("crop_fraction", 0.875)
    return (f"**The deployed input size changed: {size} px, not the model's own {native} px** (`--min-resolution`). "
            f"Feed the file {size} x {size} images: resize the shorter side to {round(size / crop)} px "
            f"({prep.get('interpolation', 'bilinear')}), centre-crop {size} px, normalise as before; its ONNX "
            "metadata says the same.")


def render_markdown(data: dict) -> str:
    """report.md's text (less its Plots section) from report.json's dict (or `collect` and the summaries)."""
    return render_records(RunRecords.from_report(data), shows_deployed=bool(data.get("deployed")))


def render_records(records: RunRecords, shows_deployed: bool = True) -> str:
    """report.md's text (less its Plots section); `shows_deployed` False: the records have no deployment summary of
    their own (older folders), so "What ships" is left out."""
    depth = records.selection.depth_planned
    lines = [*_heading(records), *_shipped_section(records, records.deployed if shows_deployed else None),
             *_plans_section(records),
             *(_latency_section(records) + _dropped_blocks_section(records) if depth else []),
             *_recovery_section(records),
             *_export_section(records.exports), *_wall_time_section(records.timings)]
    return "\n".join(lines) + "\n"


def _heading(records: RunRecords) -> list[str]:
    s, sel, dev = records.settings, records.selection, records.latency.device  # dev: the latency table's fingerprint
    return [
        f"# Compression report: {s['model']}",
        "",
        f"Budget {sel.budget} on {dev['device_name']} ({dev['backend']} {dev['backend_version']}, {dev['precision']}, "
        f"batch {dev['batch']}, {dev['resolution']} px, {dev['threads']} threads). Preset `{s['preset']}`, selector "
        f"`{sel.selector}`.",
        "",
    ]


def _plans_section(records: RunRecords) -> list[str]:
    """Precision and depth: each precision measured here, each plan, and why one was recovered."""
    sel = records.selection
    if not sel.plans:
        return []
    survey = _options(records.precisions, "options")
    lines = ["## Precision and depth", ""]
    if len(survey) > 1:
        lines += ["| precision | latency ratio (original, measured) | agreement (selection split) | kept |",
                  "|---|---|---|---|"]
        lines += [f"| {o.precision}{_at(o.resolution)} | {o.latency_ratio:.3f} | {_pct(o.agreement)} | "
                  f"{'yes' if o.kept else 'no'}: {o.reason} |"
                  for o in survey + _options(records.precisions, "resolutions")]
        lines.append("")
    lines += ["| plan | predicted ratio | measured ratio | meets budget | agreement before recovery |",
              "|---|---|---|---|---|"]
    for plan in sel.plans:
        meets = {True: "yes", False: "**no**", None: "not measured"}[plan.meets_budget]
        lines.append(f"| {plan.name} | {plan.predicted_ratio:.3f} | {_ratio(plan.measured_ratio)} | {meets} | "
                     f"{_pct(plan.agreement)} |")
    lines += ["", f"{sel.why}.", "", f"**Deployed: {records.deployed.shown()}**.", ""]
    hint = hint_line(sel.resolution_hint)
    return lines + ([hint, ""] if hint else [])


def _options(precisions: dict, which: str) -> list[PrecisionOption]:
    """precisions.json's survey: `options` (at the model's own input size) or `resolutions` (smaller ones)."""
    return [PrecisionOption.from_dict(o) for o in precisions.get(which, [])]


def _at(size: int | None) -> str:
    return "" if not size else f" at {size} px"


_BUDGET_OUTCOME = {True: "**met**.", False: "**missed** (no further block could be dropped).",
                   None: "not measured on this machine."}


def _latency_section(records: RunRecords) -> list[str]:
    lat, sel = records.latency, records.selection
    return [
        "## Latency",
        "",
        "| | original | compressed | ratio |",
        "|---|---|---|---|",
        f"| predicted from the table | {_ms(lat.original_ms_table)} | {_ms(lat.predicted_ms)} | {lat.predicted_ratio:.3f} |",
        f"| measured end to end | {_ms(lat.measured_original_ms)} | {_ms(lat.measured_compressed_ms)} | "
        f"{_ratio(lat.measured_ratio)} |",
        "",
        f"Target ratio {lat.target_ratio:.3f}: " + _BUDGET_OUTCOME[lat.meets_budget]
        + f" Latency table: {lat.table_source} ({lat.table_path}), predicting with the "
        f"{lat.latency_model} latency model.",
        *[f"\n{a['table_disagreement'].replace('warning: ', 'Warning: ', 1)}" for a in sel.attempts[:1]
          if "table_disagreement" in a],
        "",
    ]


def _dropped_blocks_section(records: RunRecords) -> list[str]:
    sel = records.selection
    lines = [
        f"## Dropped blocks ({len(sel.dropped)} of {len(records.candidates['candidates'])})",
        "",
        "| block | recoverability (feature MSE) | latency saved | score | dropped |",
        "|---|---|---|---|---|",
    ]
    for score in sel.scores:
        mark = "yes" if score.block in sel.dropped else ""
        lines.append(f"| {score.block} | {score.recoverability:.4g} | {score.saving_ms:.3f} ms "
                     f"({score.saving_percent:.1f}%) | {score.score:.4g} | {mark} |")
    return lines


def _recovery_section(records: RunRecords) -> list[str]:
    rec, ev = records.recovery, records.evaluation
    candidates = ev.candidates  # run folders made before blends: two
    lines = [
        "",
        "## Recovery on held-out images",
        "",
        *(_recipes_lines(rec, ev) if rec.recipes is not None else [
            f"Method `{rec.settings['method']}`, {rec.steps} steps; recovery kept the **{rec.kept}** "
            f"state (selection-split KL {rec.selection_kl_before:.4f} before, {rec.selection_kl_after:.4f} kept)."]),
        "",
        f"Report images: {ev.report.images} ({ev.report_source}), never trained on. They choose one thing: "
        "the deployed network is the row below that agrees best with the original on them (KL breaks ties), so its "
        "figure is the best of the rows and slightly optimistic." + (" " + BLEND_EXPLAINED) * (len(candidates) > 2),
        *([] if ev.report_source == "validation folder" else ["", TINY_SET_REPORT_CAUTION]),
        "",
        *_agreement_table(ev.report, candidates),
        *_quantization_aware_lines(ev.quantization_aware),
    ]
    skipped = records.data.get("tiny_set", {}).get("skipped", {})  # data.json
    if skipped:
        lines += ["", "Skipped files in the tiny set: " + ", ".join(f"{n} {why}" for why, n in skipped.items())
                  + " (listed in data.json)."]
    train = ev.train
    return lines + [
        "",
        f"Verdict: {ev.verdict}.",
        "",
        f"Deployed network: **{records.deployed_name}** (`compressed_state_dict.pt`, and every export).",
        "",
        f"On the {train.images} training images themselves agreement went from "
        f"{_pct(train.top1('unrecovered'))} to {_pct(train.top1('recovered'))} "
        "(a rise there alone would only show fitting).",
    ]


def _recipes_lines(rec: Recovery, ev: Evaluation) -> list[str]:
    """Every recipe tried: how it ended, its learning rate and steps, its held-out figures and its time."""
    report = ev.report
    chosen = ("none: no block was dropped, only the quantization-aware finetune trained" if rec.skipped
              else rec.recipe or "none (no recipe beat the unrecovered network)")
    lines = [f"Recipes tried within {rec.recovery_time_s:g} s of recovery time (each stops when the selection "
             "split stops improving; learning rate from a range test). `recovered` below is the recipe with the "
             f"lowest selection-split KL: **{chosen}**.",
             "",
             "| recipe | outcome | lr | steps | selection KL (before -> kept) | report top-1 agreement | seconds |",
             "|---|---|---|---|---|---|---|"]
    for t in rec.trials:
        if t.status != "finished":
            lines.append(f"| {t.recipe} | {t.status}: {t.reason} | | | | | {t.seconds:.1f} |")
            continue
        name = rec.candidate_of(t.recipe)
        agreement = _pct(report.top1(name)) + (" (deployed)" if ev.deployed == name else "") \
            if t.kept == "recovered" and name in report.agreements else "unrecovered kept"
        lines.append(f"| {t.recipe} | {t.stopped} | {t.lr:.3g} | {t.steps} | "
                     f"{t.selection_kl_before:.4g} -> {t.selection_kl_after:.4g} | {agreement} | "
                     f"{t.seconds:.1f} |")
    return lines


def _quantization_aware_lines(rows: list[dict]) -> list[str]:
    """Each INT8 network's two figures on the report images: quantized after recovery, recovered while quantized
    (evaluation.json's "quantization_aware" rows)."""
    if not rows:
        return []
    lines = ["", "Quantization-aware recovery (`--recovery-quantization-aware`): the INT8 network also trained through "
             "its runtime's INT8 rounding (fake quantization; NNCF's quantizers for OpenVINO), beside the same network "
             "quantized after recovery (with no block dropped: quantized without finetuning); both are quantized by "
             "their runtime and judged on the report images above.", "",
             "| INT8 network | scheme | recover-then-quantize | quantization-aware | deployed |", "|---|---|---|---|---|"]
    for row in rows:
        blocks = f"{len(row['dropped'])} blocks dropped" if row["dropped"] else "no block dropped"
        aware = _pct(row["quantization_aware_top1"]) if row["offered"] else f"not offered: {row['why_not_offered']}"
        lines.append(f"| {blocks} | {row['precision']} | {_pct(row['recover_then_quantize_top1'])} "
                     f"(`{row['compared_with']}`) | {aware} | {'yes' if row['deployed'] else 'no'} |")
    return lines


def _agreement_table(report: ImageSetFigures, candidates: list[str]) -> list[str]:
    lines = ["| network | top-1 agreement with original | top-5 agreement | top-1 accuracy | top-5 accuracy |",
             "|---|---|---|---|---|"]
    for name in candidates:
        a = report.agreements[name]
        lines.append(f"| {name} | {_pct(a.top1_agreement)} | {_pct(a.top5_agreement)} | "
                     f"{_pct(a.student_top1)} | {_pct(a.student_top5)} |")
    original = report.agreements["unrecovered"]  # its teacher figures are the original's accuracy
    if original.teacher_top1 is not None:
        lines.append(f"| original | 100.0% | 100.0% | {_pct(original.teacher_top1)} | "
                     f"{_pct(original.teacher_top5)} |")
    return lines


def _export_section(exports: Exports) -> list[str]:
    if not exports.artefacts:
        return []
    lines = ["", "## Export", "",
             "| format | file | size | check against PyTorch | latency on the target (beside the original) |",
             "|---|---|---|---|---|"]
    for fmt, art in exports.artefacts.items():
        check = art.check  # the exporter's check, as it wrote it
        verdict = (f"max abs error {check['max_abs_error']:.2e}, top-1 agreement "
                   f"{_pct(check['top1_agreement_with_pytorch'])} on {check['images']} images"
                   + (f"; {check['note']}" if "note" in check else ""))
        lines.append(f"| {fmt} | `{art.path}` | {art.size_bytes / 1e6:.1f} MB | {verdict} | "
                     f"{_artefact_latency(art.latency)} |")
    return lines


def _wall_time_section(timings: dict) -> list[str]:
    return ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|",
            *[f"| {k.removesuffix('_s')} | {v:.1f} |" for k, v in timings.items()]]


def reselection_lines(record: dict | None) -> list[str]:
    """The report's account of the files that missed and what was done (reselection.json)."""
    if not record:
        return []
    lines = [f"- `{m['file']}` ({m['network']}) measured {m['ratio']:.3f}, missing the target {m['target_ratio']:.3f}: "
             f"{', '.join(m['excluded'])} excluded and the next candidate taken." for m in record.get("misses", [])]
    final = record.get("final_miss")
    if final:
        lines.append(f"- `{final['file']}` ({final['network']}) measured {final['ratio']:.3f}, missing the target "
                     f"{final['target_ratio']:.3f}; it ships because {final['why']}.")
    return lines
