"""What a session with a lent GPU runs first: one command, about 8 minutes on an H100.

    python -m benchmarks.gpu_session              # writes (or appends a dated section to) results/gpu_<device>.md
    python -m benchmarks.gpu_session --dry-run    # prints the commands it would run, runs nothing

It runs, each step under its own time cap so the whole fits the lent time: the `gpu` tests; `pipeline run --target
gpu` on the embedded default at budgets 0.78 and 0.5 with each installed GPU backend (the precision survey, FP16/BF16
plans beside depth, the mixed-precision ladder, export and checks); the survey table of every run; and the latency
model check (`pipeline profile --validate`) on the eager and the CUDA-graph table. Without a GPU it says so in one
line and exits 0 without writing anything.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BUDGETS = ("0.78", "0.5")
PYTHON = sys.executable
SESSION_S = 8 * 60  # the whole session; steps that no longer fit are listed as not run
MIN_STEP_S = 20  # a step with less time left than this is not started
MEASUREMENT_CAP_S = "15"  # --profile-time-cap of each run: one latency measurement (table, survey, plan) at most this


@dataclass
class Step:
    title: str
    command: list[str]
    cap_s: int  # the step is stopped after this, so the session fits its lent minutes


@dataclass
class Outcome:
    step: Step
    returncode: int | None  # None: stopped at its cap
    seconds: float
    tail: str


def device_slug(name: str) -> str:
    """A file-name word for a GPU: the model number ('NVIDIA H100 80GB HBM3' -> 'h100')."""
    found = re.search(r"\b([A-Z]{1,3}\d{2,4}[A-Za-z]?)\b", name)
    return (found.group(1) if found else re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")).lower()


def installed_gpu_backends() -> list[str]:
    """The GPU backends that can run here: torch and inductor always, TensorRT and onnxruntime CUDA when present."""
    from exporters.tensorrt_engine import tensorrt_available

    backends = ["torch", "inductor"]
    try:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            backends.append("onnxruntime")
    except ImportError:
        pass
    if tensorrt_available():
        backends.append("tensorrt")
    return backends


def steps(backends: list[str], work: Path) -> list[Step]:
    """In priority order: the tests, torch CUDA's runs, the latency model checks, then the other backends (inductor
    and TensorRT compile or build every variant, so they come last and may not fit)."""
    pipeline = [PYTHON, "-m", "pipeline.cli"]

    def runs(backend: str, cap_s: int) -> list[Step]:
        return [Step(f"run --backend {backend} --latency-budget {budget}",
                     pipeline + ["run", "--target", "gpu", "--backend", backend, "--latency-budget", budget,
                                 "--profile-time-cap", MEASUREMENT_CAP_S, "--out", str(work / f"{backend}-{budget}"),
                                 "--json"], cap_s) for budget in BUDGETS]

    plan = [Step("gpu tests", [PYTHON, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:randomly"], 90)]
    plan += runs("torch", 90) if "torch" in backends else []
    for graphs in ([], ["--cuda-graphs"]):
        plan.append(Step("latency model check" + (" (CUDA graphs)" if graphs else " (eager)"),
                         pipeline + ["profile", "--model", "efficientnet_lite0", "--target", "gpu", "--backend",
                                     "torch", "--validate", "6", *graphs], 40))
    for backend in (b for b in backends if b != "torch"):
        plan += runs(backend, 120)
    return plan


def run_all(plan: list[Step], session_s: float = SESSION_S, run=None, clock=time.monotonic) -> list[Outcome]:
    """Each step capped by its own limit and by the session's time left; the steps that no longer fit are kept as
    not run (returncode None, 0 seconds), so the report says what is missing."""
    run = run or run_step
    deadline = clock() + session_s
    outcomes = []
    for step in plan:
        left = deadline - clock()
        if left < MIN_STEP_S:
            outcomes.append(Outcome(step, None, 0.0, "not run: out of session time"))
            continue
        outcomes.append(run(Step(step.title, step.command, int(min(step.cap_s, left)))))
    return outcomes


def run_step(step: Step) -> Outcome:
    start = time.monotonic()
    try:
        done = subprocess.run(step.command, capture_output=True, text=True, timeout=step.cap_s)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, text = None, f"{exc.stdout or ''}{exc.stderr or ''}"
        text = text.decode() if isinstance(text, bytes) else text
    return Outcome(step, code, time.monotonic() - start, "\n".join(text.strip().splitlines()[-12:]))


def survey_rows(work: Path) -> list[str]:
    """One table row per precision each run surveyed (its precisions.json), with the run's choice."""
    rows = []
    for folder in sorted(p for p in work.iterdir() if p.is_dir()):
        survey = folder / "precisions.json"
        if not survey.exists():
            continue
        deployed = json.loads((folder / "dropped_blocks.json").read_text()) if (folder / "dropped_blocks.json").exists() \
            else {}
        for option in json.loads(survey.read_text())["options"]:
            rows.append(f"| {folder.name} | {option['precision']} | {option['latency_ratio']:.3f} | "
                        f"{100 * option['agreement']:.1f}% | {'kept' if option['kept'] else 'dropped'}: "
                        f"{option['reason']} | {deployed.get('precision', '')} {len(deployed.get('dropped', []))} |")
    return rows


def _exit(outcome: Outcome) -> str:
    if outcome.returncode is not None:
        return str(outcome.returncode)
    return "not run" if outcome.seconds == 0 else f"stopped at its cap ({outcome.step.cap_s} s)"


def report(device: str, outcomes: list[Outcome], work: Path) -> str:
    lines = [f"## Session of {time.strftime('%Y-%m-%d')} on {device} (`python -m benchmarks.gpu_session`)", "",
             "| step | exit | seconds | command |", "|---|---|---|---|"]
    lines += [f"| {o.step.title} | {_exit(o)} | {o.seconds:.0f} | "
              f"`{' '.join(o.step.command[1:])}` |" for o in outcomes]
    lines += ["", "### Precision survey of each run (ratio against the FP32 original, agreement on the selection "
              "split; last column: deployed precision and blocks dropped)", "",
              "| run | precision | latency ratio | agreement | kept | deployed |", "|---|---|---|---|---|---|",
              *survey_rows(work), "", "### Output tails", ""]
    for o in outcomes:
        lines += [f"**{o.step.title}**", "", "```", o.tail, "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, results: Path = RESULTS) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_session: no CUDA GPU here (torch sees none); nothing was run or written.")
        return 0
    device = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="practise-gpu-session-") as tmp:
        plan = steps(installed_gpu_backends(), Path(tmp))
        if args.dry_run:
            print("\n".join(f"[{s.cap_s:>3} s] {' '.join(s.command)}" for s in plan))
            return 0
        outcomes = run_all(plan)
        text = report(device, outcomes, Path(tmp))
    path = results / f"gpu_{device_slug(device)}.md"
    previous = path.read_text() if path.exists() else f"# {device}: GPU sessions\n\n"
    path.write_text(previous.rstrip("\n") + "\n\n" + text)  # a dated section appended: earlier sessions stay
    print(f"gpu_session: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
