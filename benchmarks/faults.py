"""Fault injection: kill `pipeline run` at each stage, damage its files, and check the rerun.

Every scenario runs the real command line as a subprocess on a tiny network (tests/tiny_models.py
`tiny_resnet` at 32 px, the CLI tests' fast settings). Kills are SIGKILL, sent when the stage's log line
or file appears (its start) or when a sign of progress inside it appears (its middle); the same command
is then run again and must finish (exit 0, no traceback) with the dropped blocks and the deployed
state_dict of an uninterrupted reference run. Damaged files are truncated copies in a finished (or, for
the recovery checkpoint, a killed) run folder; the rerun must name the file and redo its stage. A
read-only run folder during export is made by running the export as an unprivileged user.

    python -m benchmarks.faults [--only profile,recovery] [--out benchmarks/results/faults.md]

Which comparisons can be bit-identical: everything from recovery on is deterministic on the CPU given the
dropped blocks, so a kill from recovery on must reproduce the reference's state_dict bit for bit (a kill
inside recovery resumes from its checkpoint and must too). Profiling and the end-to-end measurement of the
selection are wall-clock timings: a kill there measures again, and on a busy machine the rerun may choose
other blocks than the reference did; such a row says so instead of claiming a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
TINY = "tests.tiny_models:tiny_resnet"
FAST_RUN = ["--resolution", "32", "--allow-random-weights", "--scoring-steps", "3", "--recovery-steps", "40",
            "--batch-size", "4", "--profile-time-cap", "2"]
STAGE_FILES = {  # the file each stage writes last: a rerun that (re)writes it did that stage
    "latency_table.json": "profile", "recoverability.json": "scoring", "selection.json": "selection",
    "recovery.json": "recovery", "evaluation.json": "evaluation", "export.json": "export + artefact timing",
    "report.json": "report",
}


# -- triggers: when to kill ---------------------------------------------------------------------------------
@dataclass
class Log:
    """The log holds `pattern` (after the `after` pattern, when given)."""

    pattern: str
    after: str | None = None

    def fired(self, log: str, out: Path) -> bool:
        start = 0
        if self.after is not None:
            found = re.search(self.after, log)
            if found is None:
                return False
            start = found.end()
        return re.search(self.pattern, log[start:]) is not None


@dataclass
class File:
    """The run folder holds `name`."""

    name: str

    def fired(self, log: str, out: Path) -> bool:
        return (out / self.name).exists()


@dataclass
class Later:
    """`seconds` after `first` fired."""

    first: Log | File
    seconds: float
    _since: float | None = None

    def fired(self, log: str, out: Path) -> bool:
        if self._since is None and self.first.fired(log, out):
            self._since = time.monotonic()
        return self._since is not None and time.monotonic() - self._since >= self.seconds


ARTEFACT = r"measuring the \S+ artefact's latency"
KILLS = {  # stage -> (start, middle)
    "profile": (Log(r"profiling \d+ network variants"), Log(r"timing \d+ variants", after=r"profiling \d+ network")),
    "scoring": (Log(r"scoring recoverability"), File("recoverability.json")),
    "selection and measurement": (Log(r"selecting blocks"), Log(r"timing \d+ variants", after=r"selecting blocks")),
    "recovery": (Log(r"recovering the network without"), File("recovery_checkpoint.pt")),
    "evaluation": (File("recovery.json"), Later(File("recovery.json"), 0.3)),
    "export": (File("evaluation.json"), File("model.onnx")),
    "artefact timing": (Log(ARTEFACT), Log(r"timing \d+ variants", after=ARTEFACT)),
}
DAMAGED = ["latency_table.json", "recoverability.json", "selection.json", "recovery.json",
           "compressed_state_dict.pt", "export.json", "report.json"]


# -- running the command ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    code: int
    log: str
    seconds: float
    killed: bool = False


def command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", "--model", TINY, *FAST_RUN, "--backend", "torch",
            "--latency-budget", "0.9", "--data", str(data), "--out", str(out)]


def run(cmd: list[str], home: Path, out: Path, kill_when=None, as_user: int | None = None,
        timeout: float = 1800) -> Outcome:
    """Run `cmd`; SIGKILL it when `kill_when` fires. The log is stderr with progress bars' carriage returns."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PRACTISE_HOME=str(home), PYTHONUNBUFFERED="1")
    preexec = (lambda: (os.setgid(as_user), os.setuid(as_user))) if as_user is not None else None
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=preexec)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read1(4096), b"")), daemon=True)
    reader.start()
    killed = False
    while proc.poll() is None and time.monotonic() - start < timeout:
        if kill_when is not None and kill_when.fired(b"".join(chunks).decode(errors="replace"), out):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    if proc.poll() is None and not killed:
        proc.kill()
    proc.wait()
    reader.join(timeout=10)
    proc.stdout.read()
    log = b"".join(chunks).decode(errors="replace").replace("\r", "\n")
    return Outcome(proc.returncode, log, time.monotonic() - start, killed)


# -- comparing with the reference ---------------------------------------------------------------------------
def deployed(out: Path) -> tuple[list[str] | None, dict | None]:
    import torch

    try:
        dropped = json.loads((out / "dropped_blocks.json").read_text())["dropped"]
        state = torch.load(out / "compressed_state_dict.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError):
        return None, None
    return dropped, state


def same_state(a: dict | None, b: dict | None) -> bool:
    import torch

    return a is not None and b is not None and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def stage_files(out: Path) -> dict[str, int]:
    return {name: (out / name).stat().st_mtime_ns for name in STAGE_FILES if (out / name).exists()}


def rerun_in(data: Path, out: Path, home: Path) -> tuple[Outcome, list[str]]:
    """The same command again, and the stages it did (the stage files it wrote)."""
    before = stage_files(out)
    rerun = run(command(data, out), home, out)
    after = stage_files(out)
    return rerun, [STAGE_FILES[name] for name in after if before.get(name) != after[name]]


def verdict(rerun: Outcome, out: Path, reference: tuple, deterministic: bool, did: list[str]) -> dict:
    clean = rerun.code == 0 and "Traceback" not in rerun.log and "error:" not in rerun.log
    dropped, state = deployed(out)
    same_blocks = dropped == reference[0]
    identical = same_state(state, reference[1])
    if not clean:
        result = "FAILED: rerun did not finish cleanly"
    elif identical and same_blocks:
        result = "same blocks, bit-identical state_dict"
    elif not same_blocks and not deterministic:
        result = "other blocks (the stage measured again; timings differ)"
    elif same_blocks and not identical:
        result = "same blocks, state_dict differs" if deterministic else "same blocks, state_dict differs (re-measured)"
    else:
        result = "FAILED: other blocks after a deterministic stage"
    return {"rerun_exit": rerun.code, "clean": clean, "dropped": dropped, "same_blocks": same_blocks,
            "bit_identical": identical, "result": result, "rerun_did": did, "rerun_s": round(rerun.seconds, 1),
            "error_line": next((line for line in rerun.log.splitlines() if line.startswith("error:")), None)}


MEASURED = ("profile", "scoring", "selection and measurement")  # stages up to the choice of blocks
UP_TO_SELECTION = ("settings.json", "data.json", "candidates.json", "latency_table.json", "precisions.json",
                   "recoverability.json", "selection.json", "timings.json")


def _resume_after_selection(ref_out: Path, out: Path) -> None:
    """Start from the reference's files up to the selection (as a run killed after it would have them), so a
    kill in a later stage is compared with the reference on the same blocks, not on a fresh measurement."""
    out.mkdir(parents=True)
    for name in UP_TO_SELECTION:
        if (ref_out / name).exists():
            shutil.copy2(ref_out / name, out / name)


def kill_scenario(stage: str, when: str, trigger, data: Path, work: Path, reference: tuple, ref_home: Path,
                  ref_out: Path) -> dict:
    out = work / f"kill-{stage.replace(' ', '_')}-{when}"
    home = work / f"home-{out.name}"
    if stage == "profile":  # an empty store, so the table is measured (and killed) in this run
        home.mkdir()
    else:
        shutil.copytree(ref_home, home)
    if stage not in MEASURED:
        _resume_after_selection(ref_out, out)
    first = run(command(data, out), home, out, kill_when=trigger)
    row = {"scenario": f"SIGKILL at the {when} of {stage}", "killed": first.killed,
           "killed_after_s": round(first.seconds, 1)}
    if not first.killed:
        row["result"] = f"not reached: the run ended (exit {first.code}) before the trigger"
        return row
    deterministic = stage not in MEASURED
    rerun, did = rerun_in(data, out, home)
    row |= verdict(rerun, out, reference, deterministic, did)
    return row


def damage_scenario(name: str, data: Path, work: Path, reference: tuple, ref_out: Path, ref_home: Path) -> dict:
    out, home = work / f"damaged-{name}", work / f"home-damaged-{name}"
    shutil.copytree(ref_out, out)
    shutil.copytree(ref_home, home)
    _truncate(out / name)
    rerun, did = rerun_in(data, out, home)
    remeasured = name == "selection.json"  # the selection is measured again, so its blocks may differ
    row = {"scenario": f"{name} truncated in a finished run"} | verdict(rerun, out, reference, not remeasured, did)
    row["named"] = f"{name} is damaged" in rerun.log
    return row


def _truncate(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def damaged_checkpoint_scenario(data: Path, work: Path, reference: tuple, ref_home: Path, ref_out: Path) -> dict:
    out, home = work / "damaged-checkpoint", work / "home-damaged-checkpoint"
    shutil.copytree(ref_home, home)
    _resume_after_selection(ref_out, out)
    first = run(command(data, out), home, out, kill_when=File("recovery_checkpoint.pt"))
    row = {"scenario": "recovery_checkpoint.pt truncated in a killed run"}
    if not first.killed:
        return row | {"result": "not reached: recovery finished before the checkpoint was seen"}
    _truncate(out / "recovery_checkpoint.pt")
    rerun, did = rerun_in(data, out, home)
    return row | verdict(rerun, out, reference, True, did) | {"named": "recovery_checkpoint.pt is damaged" in rerun.log}


def damaged_store_scenario(data: Path, work: Path, reference: tuple, ref_home: Path) -> dict:
    out, home = work / "damaged-store", work / "home-damaged-store"
    shutil.copytree(ref_home, home)
    tables = sorted((home / "tables").glob("*.json"))
    tables = [t for t in tables if not t.name.endswith(".validation.json")]
    _truncate(tables[0])
    rerun, did = rerun_in(data, out, home)
    row = {"scenario": "stored latency table truncated (new run folder)"} | verdict(rerun, out, reference, False, did)
    return row | {"named": "is damaged" in rerun.log and tables[0].name in rerun.log}


def read_only_export_scenario(data: Path, work: Path, reference: tuple, ref_home: Path) -> dict:
    """Kill at the start of export, then rerun with the run folder on a read-only mount (a private mount namespace)."""
    row = {"scenario": "read-only --out during export"}
    out, home = work / "read-only", work / "home-read-only"
    shutil.copytree(ref_home, home)
    first = run(command(data, out), home, out, kill_when=File("evaluation.json"))
    if not first.killed:
        return row | {"result": "not reached"}
    cmd = command(data, out)
    mounted = ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{out}" "{out}" && exec "$@"', "sh", *cmd]
    rerun = run(mounted, home, out)
    error = next((line for line in rerun.log.splitlines() if line.startswith("error:")), None)
    clean = rerun.code in (1, 2) and "Traceback" not in rerun.log and error is not None
    return row | {"rerun_exit": rerun.code, "clean": clean, "error_line": error,
                  "result": "one-line error, nothing written" if clean else "FAILED: not a clean error"}


# -- the report -------------------------------------------------------------------------------------------------
def write_report(rows: list[dict], reference_s: float, path: Path) -> None:
    from pipeline.core.atomic import write_json_atomic, write_text_atomic

    lines = ["# Fault injection: kills, damaged files, read-only run folder", "",
             f"`python -m benchmarks.faults` on this machine ({os.cpu_count()} CPU cores, other jobs running); "
             f"tiny_resnet at 32 px, budget 0.9, torch CPU backend, 40 recovery steps. The uninterrupted reference run "
             f"took {reference_s:.0f} s. Each row: the state of the run folder made as described, then the same "
             "command again (exit code, whether it finished cleanly, which stages it did, how its result compares "
             "with the reference).", "",
             "| scenario | killed after | rerun exit | clean | rerun did | file named | result |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        named = {True: "yes", False: "NO"}.get(r.get("named"), "-")
        killed = f"{r['killed_after_s']} s" if "killed_after_s" in r else "-"
        lines.append(f"| {r['scenario']} | {killed} | {r.get('rerun_exit', '-')} | "
                     f"{'yes' if r.get('clean') else 'no'} | {', '.join(r.get('rerun_did', [])) or '-'} | {named} | "
                     f"{r['result']}{(' (' + r['error_line'] + ')') if r.get('error_line') else ''} |")
    failures = [r for r in rows if str(r.get("result", "")).startswith("FAILED")]
    lines += ["", f"{len(rows)} scenarios, {len(failures)} failed.", "",
              "Profiling and the selection's end-to-end measurement are wall-clock timings: a rerun after a kill "
              "there measures again and may, on a busy machine, choose other blocks; every later stage is "
              "deterministic on the CPU given the dropped blocks, so its rows must be bit-identical."]
    write_text_atomic(path, "\n".join(lines) + "\n")
    write_json_atomic(path.with_suffix(".json"), rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated kinds: kills, damaged, checkpoint, store, read-only, "
                                                     "or stage names (profile, recovery, ...)")
    parser.add_argument("--out", type=Path, default=RESULTS / "faults.md")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    sys.path.insert(0, str(ROOT))
    from tests.conftest import write_images

    with tempfile.TemporaryDirectory(prefix="practise-faults-") as tmp:
        work = Path(tmp)
        data = write_images(work / "data", 12)
        ref_out, ref_home = work / "reference", work / "home-reference"
        ref_home.mkdir()
        reference_run = run(command(data, ref_out), ref_home, ref_out)
        if reference_run.code != 0:
            raise SystemExit(f"the reference run failed:\n{reference_run.log[-3000:]}")
        reference = deployed(ref_out)
        print(f"reference: {reference_run.seconds:.0f} s, dropped {reference[0]}", flush=True)
        rows = []

        def wanted(kind: str) -> bool:
            return only is None or kind in only

        def record(row: dict) -> None:
            rows.append(row)
            print(json.dumps(row)[:300], flush=True)
            write_report(rows, reference_run.seconds, args.out)  # after every row: a long sitting keeps its results

        def kills(stages: list[str]) -> None:
            for stage in stages:
                for when, trigger in zip(("start", "middle"), KILLS[stage]):
                    if wanted("kills") or wanted(stage):
                        record(kill_scenario(stage, when, trigger, data, work, reference, ref_home, ref_out))

        kills(["recovery", "evaluation", "export", "artefact timing"])  # deterministic given the blocks: bit-identical
        if wanted("read-only"):
            record(read_only_export_scenario(data, work, reference, ref_home))
        if wanted("checkpoint"):
            record(damaged_checkpoint_scenario(data, work, reference, ref_home, ref_out))
        for name in DAMAGED if wanted("damaged") else []:
            record(damage_scenario(name, data, work, reference, ref_out, ref_home))
        if wanted("store"):
            record(damaged_store_scenario(data, work, reference, ref_home))
        kills(["profile", "scoring", "selection and measurement"])  # measured again after a kill: may differ
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
