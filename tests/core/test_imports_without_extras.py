"""Every module imports without TensorRT, matplotlib or foolbox: optional parts are imported where used.

One subprocess blocks the three (`sys.modules[name] = None`, so `import` raises ImportError as if they were
not installed) and imports every module of the library and the benchmarks, plus one probe module that
imports matplotlib at its top: the probe must be the only failure, which shows the check can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

BLOCKED = ("tensorrt", "matplotlib", "foolbox")
FOLDERS = ("pipeline", "exporters", "profilers", "benchmarks")
PROBE = "probe_plots_at_import"

_SCRIPT = """
import importlib, json, sys
for name in {blocked!r}:
    sys.modules[name] = None
failures = {{}}
for module in {modules!r}:
    try:
        importlib.import_module(module)
    except Exception as exc:
        failures[module] = f"{{type(exc).__name__}}: {{exc}}"
print(json.dumps(failures))
"""


def every_module() -> list[str]:
    """Dotted names of every module in the library and benchmark folders (`__main__` modules run the CLI)."""
    names = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_without_tensorrt_matplotlib_or_foolbox(tmp_path):
    (tmp_path / f"{PROBE}.py").write_text("import matplotlib.pyplot\n")
    modules = every_module()
    assert len(modules) > 60 and "exporters.tensorrt_engine" in modules and "benchmarks.fashion_mnist" in modules
    script = _SCRIPT.format(blocked=BLOCKED, modules=[*modules, PROBE])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(failures) == [PROBE], failures  # every real module imported; the probe did not
    assert "matplotlib" in failures[PROBE]
