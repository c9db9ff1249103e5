"""The run's figures: PNGs in the run folder that report.md and report.html show.

matplotlib is optional (the `plots` extra): it is imported inside `write_plots`, never at module top, and
without it the report is still written and says the plots were skipped. Each figure is drawn from the
stage files alone, so a finished run folder can be plotted again.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from pipeline.core.atomic import write_bytes_atomic
from pipeline.run.runfolder import RunFolder

MISSING_MATPLOTLIB = "matplotlib is not installed (pip install '.[plots]')"


@dataclass(frozen=True)
class Figure:
    file: str  # PNG in the run folder
    title: str
    caption: str

    def to_dict(self) -> dict:
        return {"file": self.file, "title": self.title, "caption": self.caption}


def load_pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)  # no display: figures only go to files
    import matplotlib.pyplot as plt

    return plt


def write_plots(folder: RunFolder) -> dict:
    """Draw every figure the run's stage files allow; {"figures": [...], "skipped": reason or None}."""
    plt = load_pyplot()
    if plt is None:
        return {"figures": [], "skipped": MISSING_MATPLOTLIB}
    selection = folder.read_json("selection.json") if folder.has("selection.json") else None
    recovery = folder.read_json("recovery.json") if folder.has("recovery.json") else None
    drawers = [
        ("blocks.png", selection, _draw_blocks),
        ("latency_attempts.png", selection, _draw_attempts),
        ("recovery_curve.png", recovery, _draw_recovery),
        ("plans.png", selection, lambda ax, stage: _draw_plans(ax, stage, shipped_point(folder))),
    ]
    figures = []
    for file, stage, draw in drawers:
        if stage is None:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
        try:
            described = draw(ax, stage)
            if described is not None:
                _save(fig, folder, file)
                figures.append(Figure(file, *described).to_dict())
        finally:
            plt.close(fig)
    return {"figures": figures, "skipped": None}


def _save(fig, folder: RunFolder, file: str) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes_atomic(folder.file(file), buffer.getvalue())


def _draw_blocks(ax, selection: dict) -> tuple[str, str] | None:
    """Latency saved against recoverability per candidate, the dropped ones marked."""
    scores = selection.get("scores") or []
    if not scores:
        return None
    dropped = set(selection.get("dropped", []))
    for chosen, label, style in ((False, "kept", dict(marker="o", color="tab:blue")),
                                 (True, "dropped", dict(marker="*", s=160, color="tab:red"))):
        points = [s for s in scores if (s["block"] in dropped) == chosen]
        if points:
            ax.scatter([s["saving_percent"] for s in points], [s["recoverability"] for s in points], label=label,
                       **style)
    for s in scores:
        ax.annotate(s["block"], (s["saving_percent"], s["recoverability"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    if all(s["recoverability"] > 0 for s in scores):
        ax.set_yscale("log")
    ax.set_xlabel("latency saved by dropping the block alone (% of the original)")
    ax.set_ylabel("recoverability (feature MSE, lower recovers better)")
    ax.legend()
    return ("Candidate blocks", f"Latency saved against recoverability for {len(scores)} candidate blocks; "
            f"the {len(dropped)} dropped are starred (good blocks sit bottom right).")


def _measured_attempts(selection: dict) -> list[tuple[str, dict]]:
    """(label, attempt) for every selection measured end to end: each plan's attempts when the run made plans."""
    plans = selection.get("plans") or []
    groups = [(str(p.get("name", p.get("precision"))), p.get("attempts") or []) for p in plans]
    groups = [g for g in groups if g[1]] or [("selection", selection.get("attempts", []))]
    return [(label, a) for label, attempts in groups for a in attempts if a.get("measured")]


def _ratios(attempt: dict) -> tuple[float, float]:
    """Predicted and measured ratio against the original FP32 network (what the budget is about)."""
    return (attempt.get("predicted_ratio_vs_fp32", attempt["predicted_ratio"]),
            attempt.get("measured_ratio_vs_fp32", attempt["measured"]["ratio_median"]))


def _draw_attempts(ax, selection: dict) -> tuple[str, str] | None:
    """Predicted against measured latency ratio for every selection measured end to end."""
    measured_attempts = _measured_attempts(selection)
    if not measured_attempts:
        return None
    points = []
    for label in dict.fromkeys(label for label, _ in measured_attempts):
        group = [a for name, a in measured_attempts if name == label]
        xy = [_ratios(a) for a in group]
        ax.scatter([x for x, _ in xy], [y for _, y in xy], label=label, s=40)
        for a, (x, y) in zip(group, xy):
            ax.annotate(f"#{a['attempt']} ({len(a['dropped'])} blocks)", (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        points += xy
    final = selection["attempts"][selection.get("chosen_attempt", -1)] if selection.get("attempts") else {}
    if final.get("measured"):
        ax.scatter(*zip(_ratios(final)), marker="*", s=200, color="tab:red", label="kept", zorder=3)
    low, high = _span([v for xy in points for v in xy] + [selection["target_ratio"]])
    ax.plot([low, high], [low, high], color="grey", linestyle=":", label="measured = predicted")
    ax.axhline(selection["target_ratio"], color="tab:green", linestyle="--", label="target ratio")
    ax.set_xlabel("predicted latency ratio (latency table)")
    ax.set_ylabel("measured latency ratio (end to end)")
    ax.legend(fontsize=8)
    return ("Predicted and measured latency", f"{len(points)} selection(s) measured end to end beside the "
            "original; below the dashed line meets the budget, off the dotted line the table was wrong.")


def _draw_recovery(ax, recovery: dict) -> tuple[str, str] | None:
    """The training loss per step and the selection-split KL at each check (step 0: unrecovered)."""
    losses = recovery.get("losses") or []
    checks = recovery.get("checks") or []
    if not losses and not checks:
        return None
    if losses:
        ax.plot(range(1, len(losses) + 1), losses, color="tab:blue", label="training loss (feature MSE)")
    ax.set_xlabel("recovery step")
    ax.set_ylabel("training loss", color="tab:blue")
    kl_axis = ax.twinx()
    points = [(0, recovery.get("selection_kl_before"))] + [(c["step"], c["selection_kl"]) for c in checks]
    points = [(step, kl) for step, kl in points if kl is not None]
    kl_axis.plot([step for step, _ in points], [kl for _, kl in points], color="tab:orange", marker="o",
                 label="selection-split KL")
    if recovery.get("best_step") is not None:
        kl_axis.axvline(recovery["best_step"], color="tab:red", linestyle="--", label="kept checkpoint")
    kl_axis.set_ylabel("KL from the original (selection split)", color="tab:orange")
    kl_axis.legend(fontsize=8, loc="upper right")
    return ("Recovery curve", f"{len(losses)} recovery steps: training loss, and the KL divergence from the "
            f"original on the selection split at {len(checks)} check(s) (step 0: before recovery).")


def shipped_point(folder: RunFolder) -> dict | None:
    """The deployed network's form (precision, dropped blocks, input size) and its shipped file's own measured
    ratio, once evaluation has chosen it; None before."""
    if not folder.has("evaluation.json") or not folder.has("dropped_blocks.json"):
        return None
    from pipeline.run.records import DeployedNetwork

    deployed = DeployedNetwork.read(folder)
    export = folder.read_json("export.json") if folder.has("export.json") else {}
    shipped = next((r for r in export.values() if isinstance(r, dict) and r.get("deployed")), {})
    latency = shipped.get("latency") or {}
    return {"precision": deployed.precision, "dropped": sorted(deployed.dropped),
            "resolution": deployed.input_resolution, "file": shipped.get("path"),
            "ratio": latency.get("ratio") if latency.get("measured") else None}


def _draw_plans(ax, selection: dict, shipped: dict | None = None) -> tuple[str, str] | None:
    """Each plan the run considered (a precision and its blocks): measured latency ratio against agreement; the
    plan whose network shipped is starred (the recovered one until something shipped), and the shipped file is
    drawn at its own measured ratio (mixed precision and a later timing move it off its plan)."""
    plans = [p for p in selection.get("plans") or [] if _number(p.get("measured_ratio")) and
             _number(p.get("agreement"))]
    if not plans:
        return None
    starred = _shipped_plan(plans, shipped) if shipped else _chosen_plan(selection)
    for precision in sorted({str(p.get("precision")) for p in plans}):
        group = [p for p in plans if str(p.get("precision")) == precision]
        ax.scatter([p["measured_ratio"] for p in group], [p["agreement"] for p in group], label=precision, s=50)
    for p in plans:
        star = p is starred or (shipped is None and p.get("chosen"))
        ax.annotate(("* " if star else "") + str(p["name"]), (p["measured_ratio"], p["agreement"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    file_note = ""
    if shipped and starred is not None and _number(shipped.get("ratio")):
        ax.scatter([shipped["ratio"]], [starred["agreement"]], marker="*", s=220, color="tab:red", zorder=3,
                   label=f"shipped file ({shipped['file']})")
        file_note = f"; its file {shipped['file']} measured {shipped['ratio']:.3f} (red star)"
    ax.axvline(selection["target_ratio"], color="tab:green", linestyle="--", label="target ratio")
    ax.set_xlabel("measured latency ratio")
    ax.set_ylabel("agreement with the original (selection split, before recovery)")
    ax.legend(fontsize=8, title="precision")
    what = (f"starred: {starred['name']}, the plan whose network shipped{file_note}" if shipped and starred
            else "the recovered one starred")
    return ("Plans", f"{len(plans)} plan(s) the run considered ({what}): left of the dashed line meets the budget, "
            "higher agrees more with the original.")


def _shipped_plan(plans: list[dict], shipped: dict) -> dict | None:
    """The plan of the network that shipped: same precision, dropped blocks and input size."""
    return next((p for p in plans if str(p.get("precision")) == shipped["precision"]
                 and sorted(p.get("dropped") or []) == shipped["dropped"]
                 and p.get("resolution") == shipped["resolution"]), None)


def _chosen_plan(selection: dict) -> dict | None:
    """selection.json names the chosen plan by its index in "plans" (or a plan says "chosen": true)."""
    index, plans = selection.get("chosen_plan"), selection.get("plans") or []
    return plans[index] if isinstance(index, int) and -len(plans) <= index < len(plans) else None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _span(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = max(0.02, 0.05 * (high - low))
    return low - pad, high + pad


def markdown_section(plots: dict) -> list[str]:
    """The report's Plots section: each figure as a Markdown image with its caption."""
    lines = ["", "## Plots", ""]
    if plots.get("skipped"):
        return lines + [f"Plots skipped: {plots['skipped']}."]
    if not plots["figures"]:
        return lines + ["No plots: the run folder holds nothing to draw."]
    for figure in plots["figures"]:
        lines += [f"![{figure['title']}]({figure['file']})", "", f"*{figure['caption']}*", ""]
    return lines[:-1]
