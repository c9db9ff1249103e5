"""report.json (everything, machine-readable) and report.md (what a person reads first)."""

from __future__ import annotations

from pipeline.core.clock import now_iso
from pipeline.latency.budget import WITHIN_NOISE
from pipeline.run.html_page import markdown_to_html
from pipeline.run.plots import markdown_section, write_plots
from pipeline.run.records import DeployedNetwork
from pipeline.run.resolution_hint import hint_line
from pipeline.run.runfolder import RunFolder

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
        losses = data["recovery"].get("losses", [])
        data["recovery"] = {k: v for k, v in data["recovery"].items() if k != "losses"}
        data["recovery"]["loss_first"] = losses[0] if losses else None
        data["recovery"]["loss_last"] = losses[-1] if losses else None
        data["recovery"]["steps_run"] = len(losses)
    return data


def latency_summary(data: dict) -> dict:
    table = data["latency_table"]["table"]
    final = data["selection"]["attempts"][data["selection"].get("chosen_attempt", -1)]
    measured = final.get("measured")
    return {
        "device": table["fingerprint"],
        "table_source": data["latency_table"]["source"],
        "table_path": data["latency_table"]["path"],
        "original_ms_table": table["full"]["median_ms"],
        # a plan in another precision records its ratios in its own frame and against the FP32 original
        "predicted_ms": final.get("predicted_ratio_vs_fp32", final["predicted_ratio"]) * table["full"]["median_ms"]
        if "predicted_ratio_vs_fp32" in final else final["predicted_ms"],
        "predicted_ratio": final.get("predicted_ratio_vs_fp32", final["predicted_ratio"]),
        "measured_original_ms": measured["original"]["median_ms"] if measured else None,
        "measured_compressed_ms": measured["compressed"]["median_ms"] if measured else None,
        "measured_ratio": final.get("measured_ratio_vs_fp32", measured["ratio_median"]) if measured else None,
        "target_ratio": data["selection"]["target_ratio"],
        "meets_budget": final.get("meets_budget"),
        "latency_model": table.get("latency_model", {}).get("kind", "additive"),  # tables before it: additive
    }


def deployed_summary(data: dict) -> dict:
    """What ships: its precision, its dropped blocks and, when a precision-only plan won, that plan's ratio."""
    deployed = DeployedNetwork.from_dict({"dropped": [], **data.get("deployed", {})})
    ev = data.get("evaluation", {})
    summary = {"precision": deployed.precision, "dropped": deployed.dropped, "network": ev.get("deployed"),
               "input_resolution": deployed.input_resolution,
               "model_resolution": data.get("candidates", {}).get("resolution")}
    sel = data["selection"]
    index = sel.get("precision_plan")
    plan = sel["plans"][index] if index is not None else None
    if plan is not None and not deployed.dropped and (plan["precision"], plan.get("resolution")) == (
            deployed.precision, deployed.input_resolution):  # the precision-only plan shipped (plain or QAT)
        summary.update(predicted_ratio=plan["predicted_ratio"], measured_ratio=plan["measured_ratio"],
                       meets_budget=plan["meets_budget"], plan=plan["name"])
    shipped = next((r for r in data.get("export", {}).values() if isinstance(r, dict) and r.get("deployed")), None)
    if shipped is not None and shipped.get("latency", {}).get("measured"):  # the file itself (mixed precision too)
        summary.update(artefact=shipped["path"], artefact_ratio=shipped["latency"]["ratio"])
    return summary


def write_report(folder: RunFolder, timings: dict) -> None:
    data = collect(folder)
    data["latency"] = latency_summary(data)
    data["deployed"] = deployed_summary(data)
    data["timings_s"] = timings
    data["finished_at"] = now_iso()
    data["plots"] = write_plots(folder)
    markdown = render_markdown(data) + "\n".join(markdown_section(data["plots"])) + "\n"
    folder.write_text("report.md", markdown)
    folder.write_text("report.html", markdown_to_html(markdown, f"Compression report: {data['settings']['settings']['model']}",
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


def _artefact_latency(latency: dict | None) -> str:
    if latency is None:
        return "not measured (exported by an earlier version)"
    if not latency["measured"]:
        return f"not measured: {latency['reason']}"
    verdict = "**meets**" if latency["meets_budget"] else "**MISSES**"
    return (f"{_ms(latency['artefact_ms'])} vs {_ms(latency['original_ms'])} ({latency['backend']}, "
            f"{latency['precision']}): ratio {latency['ratio']:.3f}, {verdict} target {latency['target_ratio']:.3f}")


def shipped_verdict(latency: dict | None, user_margin: float | None = None) -> str:
    """The budget verdict of the shipped file's own measurement, saying when it is within the measurement's noise
    (or inside the margin the user asked plans to keep, --latency-margin)."""
    if not latency or not latency.get("measured"):
        return "its latency was not measured here" + (f" ({latency['reason']})" if latency else "")
    margin = latency["target_ratio"] - latency["ratio"]
    verdict = "meets" if margin >= 0 else "MISSES"
    sure = (f", within the measurement's precision (±{WITHIN_NOISE}) of the target: another measurement may land on "
            "the other side" if abs(margin) < WITHIN_NOISE else "")
    if not sure and user_margin and 0 <= margin < user_margin:
        sure = f", but by less than the --latency-margin {user_margin:g} asked for"
    return f"measured at {latency['ratio']:.3f} of the original's latency, {verdict} the target {latency['target_ratio']:.3f}{sure}"


def _shipped_section(data: dict) -> list[str]:
    """What ships, first: the file, its runtime and precision, its own measured ratio and agreement, how to load it."""
    deployed, ev = data.get("deployed"), data.get("evaluation", {})
    if not deployed:  # a report rendered from records without a deployment summary (older folders)
        return []
    shipped = next((r for r in (data.get("export") or {}).values() if isinstance(r, dict) and r.get("deployed")), None)
    blocks = f"{len(deployed['dropped'])} blocks dropped" if deployed["dropped"] else "no block dropped"
    form = f"{deployed['precision']}{_at(deployed.get('input_resolution'))}, {blocks}"
    name = deployed["network"] or form
    lines = ["## What ships", "", f"**{name}**" + ("." if name == form else f": {form}.")]
    report = ev.get("report", {})
    if deployed.get("network") in report:
        lines.append(f"Top-1 agreement with the original on the {report['images']} report images: "
                     f"{_pct(report[deployed['network']]['top1_agreement'])}.")
    if deployed.get("input_resolution"):
        lines += ["", _size_changed(data, deployed["input_resolution"], deployed.get("model_resolution"))]
    if shipped is not None:
        user_margin = data.get("settings", {}).get("settings", {}).get("latency_margin")
        lines += ["", f"File `{shipped['path']}` ({shipped['format']}): "
                      f"{shipped_verdict(shipped.get('latency'), user_margin)}."]
    missed = reselection_lines(data.get("reselection"))
    if missed:
        lines += ["", "Files timed after export that missed the budget:", "", *missed]
    if shipped is not None:
        if shipped.get("loading_snippet"):
            lines += ["", "Load and run it as it was timed:", "", "```python", shipped["loading_snippet"].rstrip(), "```"]
    return lines + [""]


def _size_changed(data: dict, size: int, native: int | None) -> str:
    """The plain warning a deployment at a smaller input size needs: what to feed the file now."""
    prep = data.get("data", {}).get("preprocessing", {})
    crop = prep.get("crop_fraction", 0.875)
    return (f"**The deployed input size changed: {size} px, not the model's own {native} px** (`--min-resolution`). "
            f"Feed the file {size} x {size} images: resize the shorter side to {round(size / crop)} px "
            f"({prep.get('interpolation', 'bilinear')}), centre-crop {size} px, normalise as before; its ONNX "
            "metadata says the same.")


def render_markdown(data: dict) -> str:
    depth = bool(data["selection"]["dropped"]) or data["selection"].get("chosen_plan", 0) is not None
    lines = [*_heading(data), *_shipped_section(data), *_plans_section(data),
             *(_latency_section(data) + _dropped_blocks_section(data) if depth else []),
             *_recovery_section(data),
             *_export_section(data.get("export")), *_wall_time_section(data["timings_s"])]
    return "\n".join(lines) + "\n"


def _heading(data: dict) -> list[str]:
    s, sel, dev = data["settings"]["settings"], data["selection"], data["latency"]["device"]
    return [
        f"# Compression report: {s['model']}",
        "",
        f"Budget {sel['budget']} on {dev['device_name']} ({dev['backend']} {dev['backend_version']}, {dev['precision']}, "
        f"batch {dev['batch']}, {dev['resolution']} px, {dev['threads']} threads). Preset `{s['preset']}`, selector "
        f"`{sel['selector']}`.",
        "",
    ]


def _plans_section(data: dict) -> list[str]:
    """Precision and depth: each precision measured here, each plan, and why one was recovered."""
    sel, survey = data["selection"], data.get("precisions", {}).get("options", [])
    if not sel.get("plans"):
        return []
    lines = ["## Precision and depth", ""]
    if len(survey) > 1:
        lines += ["| precision | latency ratio (original, measured) | agreement (selection split) | kept |",
                  "|---|---|---|---|"]
        sized = data.get("precisions", {}).get("resolutions", [])
        lines += [f"| {o['precision']}{_at(o.get('resolution'))} | {o['latency_ratio']:.3f} | {_pct(o['agreement'])} | "
                  f"{'yes' if o['kept'] else 'no'}: {o['reason']} |" for o in survey + sized]
        lines.append("")
    lines += ["| plan | predicted ratio | measured ratio | meets budget | agreement before recovery |",
              "|---|---|---|---|---|"]
    for plan in sel["plans"]:
        meets = {True: "yes", False: "**no**", None: "not measured"}[plan["meets_budget"]]
        lines.append(f"| {plan['name']} | {plan['predicted_ratio']:.3f} | {_ratio(plan['measured_ratio'])} | {meets} | "
                     f"{_pct(plan['agreement'])} |")
    deployed = data["deployed"]
    blocks = f"{len(deployed['dropped'])} blocks dropped" if deployed["dropped"] else "no block dropped"
    form = f"{deployed['precision']}{_at(deployed.get('input_resolution'))}, {blocks}"
    shown = form if deployed["network"] in (None, form) else f"{deployed['network']} ({form})"
    lines += ["", f"{sel['why']}.", "", f"**Deployed: {shown}**.", ""]
    hint = hint_line(sel.get("resolution_hint"))
    return lines + ([hint, ""] if hint else [])


def _at(size: int | None) -> str:
    return "" if not size else f" at {size} px"


_BUDGET_OUTCOME = {True: "**met**.", False: "**missed** (no further block could be dropped).",
                   None: "not measured on this machine."}


def _latency_section(data: dict) -> list[str]:
    lat, sel = data["latency"], data["selection"]
    return [
        "## Latency",
        "",
        "| | original | compressed | ratio |",
        "|---|---|---|---|",
        f"| predicted from the table | {_ms(lat['original_ms_table'])} | {_ms(lat['predicted_ms'])} | {lat['predicted_ratio']:.3f} |",
        f"| measured end to end | {_ms(lat['measured_original_ms'])} | {_ms(lat['measured_compressed_ms'])} | "
        f"{_ratio(lat['measured_ratio'])} |",
        "",
        f"Target ratio {lat['target_ratio']:.3f}: " + _BUDGET_OUTCOME[lat["meets_budget"]]
        + f" Latency table: {lat['table_source']} ({lat['table_path']}), predicting with the "
        f"{lat.get('latency_model', 'additive')} latency model.",
        *[f"\n{a['table_disagreement'].replace('warning: ', 'Warning: ', 1)}" for a in sel["attempts"][:1]
          if "table_disagreement" in a],
        "",
    ]


def _dropped_blocks_section(data: dict) -> list[str]:
    sel = data["selection"]
    lines = [
        f"## Dropped blocks ({len(sel['dropped'])} of {len(data['candidates']['candidates'])})",
        "",
        "| block | recoverability (feature MSE) | latency saved | score | dropped |",
        "|---|---|---|---|---|",
    ]
    for score in sel["scores"]:
        mark = "yes" if score["block"] in sel["dropped"] else ""
        lines.append(f"| {score['block']} | {score['recoverability']:.4g} | {score['saving_ms']:.3f} ms "
                     f"({score['saving_percent']:.1f}%) | {score['score']:.4g} | {mark} |")
    return lines


def _recovery_section(data: dict) -> list[str]:
    rec, ev = data["recovery"], data["evaluation"]
    candidates = ev.get("candidates", ["unrecovered", "recovered"])  # run folders made before blends: two
    lines = [
        "",
        "## Recovery on held-out images",
        "",
        *(_recipes_lines(rec, ev) if "recipes" in rec else [
            f"Method `{rec['settings']['method']}`, {rec['steps_run']} steps; recovery kept the **{rec['kept']}** "
            f"state (selection-split KL {rec['selection_kl_before']:.4f} before, {rec['selection_kl_after']:.4f} kept)."]),
        "",
        f"Report images: {ev['report']['images']} ({ev['report_source']}), never trained on. They choose one thing: "
        "the deployed network is the row below that agrees best with the original on them (KL breaks ties), so its "
        "figure is the best of the rows and slightly optimistic." + (" " + BLEND_EXPLAINED) * (len(candidates) > 2),
        *([] if ev["report_source"] == "validation folder" else ["", TINY_SET_REPORT_CAUTION]),
        "",
        *_agreement_table(ev["report"], candidates),
        *_quantization_aware_lines(ev.get("quantization_aware") or []),
    ]
    skipped = data.get("data", {}).get("tiny_set", {}).get("skipped", {})
    if skipped:
        lines += ["", "Skipped files in the tiny set: " + ", ".join(f"{n} {why}" for why, n in skipped.items())
                  + " (listed in data.json)."]
    train = ev["train"]
    return lines + [
        "",
        f"Verdict: {ev['verdict']}.",
        "",
        f"Deployed network: **{ev.get('deployed', rec['kept'])}** (`compressed_state_dict.pt`, and every export).",
        "",
        f"On the {train['images']} training images themselves agreement went from "
        f"{_pct(train['unrecovered']['top1_agreement'])} to {_pct(train['recovered']['top1_agreement'])} "
        "(a rise there alone would only show fitting).",
    ]


def _recipes_lines(rec: dict, ev: dict) -> list[str]:
    """Every recipe tried: how it ended, its learning rate and steps, its held-out figures and its time."""
    from pipeline.run.deployment import recipe_candidate

    report = ev["report"]
    chosen = ("none: no block was dropped, only the quantization-aware finetune trained" if rec.get("skipped")
              else rec["recipe"] or "none (no recipe beat the unrecovered network)")
    lines = [f"Recipes tried within {rec['recovery_time_s']:g} s of recovery time (each stops when the selection "
             "split stops improving; learning rate from a range test). `recovered` below is the recipe with the "
             f"lowest selection-split KL: **{chosen}**.",
             "",
             "| recipe | outcome | lr | steps | selection KL (before -> kept) | report top-1 agreement | seconds |",
             "|---|---|---|---|---|---|---|"]
    for t in rec["recipes"]:
        if t["status"] != "finished":
            lines.append(f"| {t['recipe']} | {t['status']}: {t['reason']} | | | | | {t['seconds']:.1f} |")
            continue
        name = recipe_candidate(rec, t["recipe"])
        agreement = _pct(report[name]["top1_agreement"]) + (" (deployed)" if ev.get("deployed") == name else "") \
            if t["kept"] == "recovered" and name in report else "unrecovered kept"
        lines.append(f"| {t['recipe']} | {t['stopped']} | {t['lr']:.3g} | {t['steps']} | "
                     f"{t['selection_kl_before']:.4g} -> {t['selection_kl_after']:.4g} | {agreement} | "
                     f"{t['seconds']:.1f} |")
    return lines


def _quantization_aware_lines(rows: list[dict]) -> list[str]:
    """Each INT8 network's two figures on the report images: quantized after recovery, recovered while quantized."""
    if not rows:
        return []
    lines = ["", "Quantization-aware recovery (`--recovery-quantization-aware`): the INT8 network also trained through "
             "its scheme's rounding (fake quantization), beside the same network quantized after recovery (with no "
             "block dropped: quantized without finetuning); both are quantized by onnxruntime and judged on the "
             "report images above.", "",
             "| INT8 network | scheme | recover-then-quantize | quantization-aware | deployed |", "|---|---|---|---|---|"]
    for row in rows:
        blocks = f"{len(row['dropped'])} blocks dropped" if row["dropped"] else "no block dropped"
        aware = _pct(row["quantization_aware_top1"]) if row["offered"] else f"not offered: {row['why_not_offered']}"
        lines.append(f"| {blocks} | {row['precision']} | {_pct(row['recover_then_quantize_top1'])} "
                     f"(`{row['compared_with']}`) | {aware} | {'yes' if row['deployed'] else 'no'} |")
    return lines


def _agreement_table(report: dict, candidates: list[str]) -> list[str]:
    lines = ["| network | top-1 agreement with original | top-5 agreement | top-1 accuracy | top-5 accuracy |",
             "|---|---|---|---|---|"]
    for name in candidates:
        r = report[name]
        lines.append(f"| {name} | {_pct(r['top1_agreement'])} | {_pct(r['top5_agreement'])} | "
                     f"{_pct(r['student_top1'])} | {_pct(r['student_top5'])} |")
    teacher_top1 = report["unrecovered"]["teacher_top1"]
    if teacher_top1 is not None:
        lines.append(f"| original | 100.0% | 100.0% | {_pct(teacher_top1)} | "
                     f"{_pct(report['unrecovered']['teacher_top5'])} |")
    return lines


def _export_section(export: dict | None) -> list[str]:
    if not export:
        return []
    lines = ["", "## Export", "",
             "| format | file | size | check against PyTorch | latency on the target (beside the original) |",
             "|---|---|---|---|---|"]
    for fmt, art in export.items():
        check = art["check"]
        verdict = (f"max abs error {check['max_abs_error']:.2e}, top-1 agreement "
                   f"{_pct(check['top1_agreement_with_pytorch'])} on {check['images']} images"
                   + (f"; {check['note']}" if "note" in check else ""))
        lines.append(f"| {fmt} | `{art['path']}` | {art['size_bytes'] / 1e6:.1f} MB | {verdict} | "
                     f"{_artefact_latency(art.get('latency'))} |")
    return lines


def _wall_time_section(timings: dict) -> list[str]:
    return ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|",
            *[f"| {k.removesuffix('_s')} | {v:.1f} |" for k, v in timings.items()]]


def reselection_lines(record: dict | None) -> list[str]:
    """The report's account of the files that missed and what was done."""
    if not record:
        return []
    lines = [f"- `{m['file']}` ({m['network']}) measured {m['ratio']:.3f}, missing the target {m['target_ratio']:.3f}: "
             f"{', '.join(m['excluded'])} excluded and the next candidate taken." for m in record.get("misses", [])]
    final = record.get("final_miss")
    if final:
        lines.append(f"- `{final['file']}` ({final['network']}) measured {final['ratio']:.3f}, missing the target "
                     f"{final['target_ratio']:.3f}; it ships because {final['why']}.")
    return lines
