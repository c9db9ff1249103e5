"""The house's layers point down only: an AST check of every import in the library and the benchmarks.

Lowest first: pipeline.core < exporters < profilers < pipeline.models < {pipeline.network, pipeline.data}
< {pipeline.latency, pipeline.recovery} < pipeline.run < pipeline.cli < benchmarks. A module may import
its own package freely and any lower layer; never a higher one, nor a different package of its own rank.
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# (package, rank); the most specific prefix of a module's name decides its layer
LAYERS = {
    "pipeline.core": 0,
    "exporters": 1,
    "profilers": 2,
    "pipeline.models": 3,
    "pipeline.network": 4, "pipeline.data": 4,
    "pipeline.latency": 5, "pipeline.recovery": 5,
    "pipeline.run": 6,
    "pipeline.cli": 7,
    "benchmarks": 8,
}
PACKAGE_INIT = "pipeline"  # pipeline/__init__.py: a docstring and a version, below everything
ALIASES = {"pipeline.__main__": "pipeline.cli"}  # `python -m pipeline` is the CLI
TOP_FOLDERS = ("pipeline", "exporters", "profilers", "benchmarks")


def layer_of(module: str) -> str | None:
    """The layer package a dotted module name belongs to, or None when it is not ours."""
    if module == PACKAGE_INIT:
        return PACKAGE_INIT
    if module in ALIASES:
        return ALIASES[module]
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    if matches:
        return max(matches, key=len)
    return "unplaced" if module.split(".")[0] in TOP_FOLDERS else None


def rank(layer: str) -> int:
    return -1 if layer == PACKAGE_INIT else LAYERS[layer]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, importer: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement, relative ones resolved against `importer`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if layer_of(f"{target}.{alias.name}") not in (None, layer_of(target))]
    return found


def violations(root: Path) -> list[str]:
    """Every import in `root`'s library folders that points up or sideways, one line each."""
    problems = []
    for folder in TOP_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            importer = module_name(root, path)
            here = layer_of(importer)
            where = path.relative_to(root)
            if here == "unplaced":
                problems.append(f"{where}: module {importer} is in no layer; add its package to LAYERS")
                continue
            tree = ast.parse(path.read_text(), str(path))
            for line, target in imported_modules(tree, importer, path.name == "__init__.py"):
                there = layer_of(target)
                if there in (None, here, PACKAGE_INIT) or there == "unplaced":
                    continue
                if rank(there) > rank(here) or (rank(there) == rank(here) and there != here):
                    problems.append(f"{where}:{line}: {here} (rank {rank(here)}) imports {target} "
                                    f"({there}, rank {rank(there)})")
    return problems


def test_every_import_points_down_the_layers():
    problems = violations(ROOT)
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_check_finds_upward_sideways_relative_lazy_and_unplaced_imports(tmp_path):
    """The check can fail: a copy of a small tree with one import of each forbidden kind."""
    _write(tmp_path, "pipeline/__init__.py", '__version__ = "0"\n')
    _write(tmp_path, "pipeline/core/errors.py", "import json\n")
    _write(tmp_path, "exporters/onnx_file.py", "from pipeline.core.errors import UsageError\n"
                                               "from pipeline.run.config import RunConfig\n")  # up: 1 -> 6
    _write(tmp_path, "profilers/table.py", "def lazy():\n    import benchmarks.machine\n")  # lazy, up: 2 -> 8
    _write(tmp_path, "pipeline/network/blocks.py", "from pipeline.data import tiny_set\n"  # sideways: same rank
                                                   "from pipeline.models import load_model\n"  # down: fine
                                                   "from . import surgery\n")  # same package: fine
    _write(tmp_path, "pipeline/data/tiny_set.py", "from .. import latency\n")  # relative, up: 4 -> 5
    _write(tmp_path, "pipeline/helpers.py", "import os\n")  # in no layer
    _write(tmp_path, "benchmarks/x.py", "from pipeline.cli.main import main\nfrom profilers import TableStore\n")
    found = violations(tmp_path)
    assert len(found) == 5, "\n".join(found)
    for fragment in ("exporters/onnx_file.py:2: exporters (rank 1) imports pipeline.run.config",
                     "profilers/table.py:2: profilers (rank 2) imports benchmarks.machine",
                     "pipeline/network/blocks.py:1: pipeline.network (rank 4) imports pipeline.data",
                     "pipeline/data/tiny_set.py:1: pipeline.data (rank 4) imports pipeline.latency",
                     "pipeline/helpers.py: module pipeline.helpers is in no layer"):
        assert any(fragment in line for line in found), (fragment, found)
