"""The run's figures: PNGs in the run folder that report.md and report.html show.

matplotlib is optional (the `plots` extra): it is imported inside `write_plots`, never at module top, and
without it the report is still written and says the plots were skipped. Each figure is drawn from the
stage files alone, so a finished run folder can be plotted again.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pipeline.core.atomic import write_bytes_atomic
from pipeline.latency.plans import Plan
from pipeline.run.records import DeployedNetwork, Evaluation, Exports, Form, Recovery, Selection
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
    selection, recovery = Selection.read_if_there(folder), Recovery.read_if_there(folder)
    drawers: list[tuple[str, Callable[[Any], tuple[str, str] | None]]] = []  # in the report's order
    if selection is not None:
        drawers += [("blocks.png", partial(_draw_blocks, selection=selection)),
                    ("latency_attempts.png", partial(_draw_attempts, selection=selection))]
    if recovery is not None:
        drawers.append(("recovery_curve.png", partial(_draw_recovery, recovery=recovery)))
    if selection is not None:
        drawers.append(("plans.png", partial(_draw_plans, selection=selection, shipped=shipped_point(folder))))
    figures = []
    for file, draw in drawers:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
        try:
            described = draw(ax)
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


def _draw_blocks(ax, selection: Selection) -> tuple[str, str] | None:
    """Latency saved against recoverability per candidate, the dropped ones marked."""
    scores = selection.scores
    if not scores:
        return None
    dropped = set(selection.dropped)
    for chosen, label, style in ((False, "kept", dict(marker="o", color="tab:blue")),
                                 (True, "dropped", dict(marker="*", s=160, color="tab:red"))):
        points = [s for s in scores if (s.block in dropped) == chosen]
        if points:
            ax.scatter([s.saving_percent for s in points], [s.recoverability for s in points], label=label,
                       **style)
    for s in scores:
        ax.annotate(s.block, (s.saving_percent, s.recoverability), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    if all(s.recoverability > 0 for s in scores):
        ax.set_yscale("log")
    ax.set_xlabel("latency saved by dropping the block alone (% of the original)")
    ax.set_ylabel("recoverability (feature MSE, lower recovers better)")
    ax.legend()
    return ("Candidate blocks", f"Latency saved against recoverability for {len(scores)} candidate blocks; "
            f"the {len(dropped)} dropped are starred (good blocks sit bottom right).")


def _measured_attempts(selection: Selection) -> list[tuple[str, dict]]:
    """(label, attempt) for every selection measured end to end: each plan's attempts when the run made plans.
    Attempts stay selection.json's dicts (the measured-selection loop's record)."""
    groups = [(p.name, p.attempts) for p in selection.plans]
    groups = [g for g in groups if g[1]] or [("selection", selection.attempts)]
    return [(label, a) for label, attempts in groups for a in attempts if a.get("measured")]


def _ratios(attempt: dict) -> tuple[float, float]:
    """Predicted and measured ratio against the original FP32 network (what the budget is about)."""
    return (attempt.get("predicted_ratio_vs_fp32", attempt["predicted_ratio"]),
            attempt.get("measured_ratio_vs_fp32", attempt["measured"]["ratio_median"]))


def _draw_attempts(ax, selection: Selection) -> tuple[str, str] | None:
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
    final = selection.final_attempt
    if final.get("measured"):
        ax.scatter(*zip(_ratios(final)), marker="*", s=200, color="tab:red", label="kept", zorder=3)
    low, high = _span([v for xy in points for v in xy] + [selection.target_ratio])
    ax.plot([low, high], [low, high], color="grey", linestyle=":", label="measured = predicted")
    ax.axhline(selection.target_ratio, color="tab:green", linestyle="--", label="target ratio")
    ax.set_xlabel("predicted latency ratio (latency table)")
    ax.set_ylabel("measured latency ratio (end to end)")
    ax.legend(fontsize=8)
    return ("Predicted and measured latency", f"{len(points)} selection(s) measured end to end beside the "
            "original; below the dashed line meets the budget, off the dotted line the table was wrong.")


def _draw_recovery(ax, recovery: Recovery) -> tuple[str, str] | None:
    """The training loss per step and the selection-split KL at each check (step 0: unrecovered)."""
    losses, checks = recovery.losses, recovery.checks
    if not losses and not checks:
        return None
    if losses:
        ax.plot(range(1, len(losses) + 1), losses, color="tab:blue", label="training loss (feature MSE)")
    ax.set_xlabel("recovery step")
    ax.set_ylabel("training loss", color="tab:blue")
    kl_axis = ax.twinx()
    points = [(0, recovery.selection_kl_before)] + [(c["step"], c["selection_kl"]) for c in checks]
    points = [(step, kl) for step, kl in points if kl is not None]
    kl_axis.plot([step for step, _ in points], [kl for _, kl in points], color="tab:orange", marker="o",
                 label="selection-split KL")
    if recovery.best_step is not None:
        kl_axis.axvline(recovery.best_step, color="tab:red", linestyle="--", label="kept checkpoint")
    kl_axis.set_ylabel("KL from the original (selection split)", color="tab:orange")
    kl_axis.legend(fontsize=8, loc="upper right")
    return ("Recovery curve", f"{len(losses)} recovery steps: training loss, and the KL divergence from the "
            f"original on the selection split at {len(checks)} check(s) (step 0: before recovery).")


@dataclass(frozen=True)
class ShippedPoint:
    """The deployed network's form and its shipped file's own measured ratio (None when the file was not timed)."""

    form: Form
    file: str | None
    ratio: float | None


def shipped_point(folder: RunFolder) -> ShippedPoint | None:
    """The deployed network's form (precision, dropped blocks, input size) and its shipped file's own measured
    ratio, once evaluation has chosen it; None before."""
    if not folder.has(Evaluation.FILE) or not folder.has(DeployedNetwork.FILE):
        return None
    shipped = Exports.read(folder).shipped
    latency = shipped.latency if shipped is not None else None
    return ShippedPoint(DeployedNetwork.read(folder).form, shipped.path if shipped is not None else None,
                        latency.ratio if latency is not None and latency.measured else None)


def _draw_plans(ax, selection: Selection, shipped: ShippedPoint | None = None) -> tuple[str, str] | None:
    """Each plan the run considered (a precision and its blocks): measured latency ratio against agreement; the
    plan whose network shipped is starred (the recovered one until something shipped), and the shipped file is
    drawn at its own measured ratio (mixed precision and a later timing move it off its plan)."""
    plans = [p for p in selection.plans if _number(p.measured_ratio) and _number(p.agreement)]
    if not plans:
        return None
    starred = _shipped_plan(plans, shipped) if shipped else selection.chosen
    for precision in sorted({str(p.precision) for p in plans}):
        group = [p for p in plans if str(p.precision) == precision]
        ax.scatter([p.measured_ratio for p in group], [p.agreement for p in group], label=precision, s=50)
    for p in plans:
        ax.annotate(("* " if p is starred else "") + p.name, (p.measured_ratio, p.agreement), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    file_note = ""
    if shipped and starred is not None and _number(shipped.ratio):
        ax.scatter([shipped.ratio], [starred.agreement], marker="*", s=220, color="tab:red", zorder=3,
                   label=f"shipped file ({shipped.file})")
        file_note = f"; its file {shipped.file} measured {shipped.ratio:.3f} (red star)"
    ax.axvline(selection.target_ratio, color="tab:green", linestyle="--", label="target ratio")
    ax.set_xlabel("measured latency ratio")
    ax.set_ylabel("agreement with the original (selection split, before recovery)")
    ax.legend(fontsize=8, title="precision")
    what = (f"starred: {starred.name}, the plan whose network shipped{file_note}" if shipped and starred
            else "the recovered one starred")
    return ("Plans", f"{len(plans)} plan(s) the run considered ({what}): left of the dashed line meets the budget, "
            "higher agrees more with the original.")


def _shipped_plan(plans: list[Plan], shipped: ShippedPoint) -> Plan | None:
    """The plan of the network that shipped: same precision, dropped blocks and input size."""
    return next((p for p in plans if p.precision == shipped.form.precision
                 and tuple(sorted(p.dropped)) == shipped.form.dropped
                 and p.resolution == shipped.form.resolution), None)


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
