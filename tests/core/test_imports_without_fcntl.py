"""Every module of the tool imports where `fcntl` does not exist (Windows): locks import it when taken."""

import os
import subprocess
import sys

from tests.conftest import ROOT

IMPORT_ALL = """
import importlib, pkgutil, sys
sys.modules["fcntl"] = None  # as on Windows: any `import fcntl` raises ImportError
failed = []
for package in ("pipeline", "profilers", "exporters"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name.endswith("__main__"):  # runs the command line
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            failed.append(f"{info.name}: {exc}")
print("imported", len(sys.modules))
print("\\n".join(failed) or "none failed")
"""


def test_every_module_imports_with_fcntl_blocked():
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "none failed", proc.stdout


def test_the_check_sees_a_module_that_imports_fcntl_at_the_top(tmp_path):
    package = tmp_path / "pipeline_probe_17"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "locked.py").write_text("import fcntl\n")
    script = IMPORT_ALL.replace('("pipeline", "profilers", "exporters")', '("pipeline_probe_17",)')
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "pipeline_probe_17.locked" in proc.stdout
