"""Two import rules the layer check (test_layers.py) does not cover: no import cycles among our modules, and no
module importing another module's private (leading underscore) names.

A cycle makes a module's behaviour depend on which of the two was imported first (and forced lazy imports to
hide it: benchmarks/fashion_mnist <-> fashion_mnist_ranks, precision_and_depth <-> precision_and_depth_fashion,
pipeline/models/registry <-> timm_models were such pairs). A private name imported elsewhere is a contract its
module does not know it has. Both checks read the source (every import, lazy ones too), so they need no optional
package, and each is shown able to fail on a small tree made in the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

FOLDERS = ("pipeline", "exporters", "profilers", "benchmarks")

# (importing file, module, private name) still imported across modules: each lives in a file another engineer is
# changing (pipeline/run/deployment.py, tests monkeypatch `_best_candidate` by that name; profilers/*). This list may
# only shrink: an entry that no longer occurs fails the test, so remove it when its import goes.
ALLOWED_PRIVATE_IMPORTS = {
    ("benchmarks/recovery_recipes.py", "pipeline.run.deployment", "_best_candidate"),
    ("profilers/openvino_backend.py", "profilers.onnxruntime_backend", "_input_for"),
}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources(root: Path) -> dict[str, Path]:
    return {_module_name(root, path): path for folder in FOLDERS for path in sorted((root / folder).rglob("*.py"))}


def _from_target(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` reads, relative imports resolved against `importer`."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> dict[str, set[str]]:
    """Our module -> our modules it imports (`from package import module` counts as importing that module)."""
    modules = _sources(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                target = _from_target(node, name, path.name == "__init__.py")
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules:
                        edges.add(f"{target}.{alias.name}")
                    elif target in modules:
                        edges.add(target)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def private_imports(root: Path) -> set[tuple[str, str, str]]:
    """(importing file, module, name) for every `from <ours> import _name` whose module is not the importer."""
    modules = _sources(root)
    found = set()
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _from_target(node, name, path.name == "__init__.py")
            if target.split(".")[0] not in FOLDERS or target == name:
                continue
            found |= {(path.relative_to(root).as_posix(), target, alias.name) for alias in node.names
                      if alias.name.startswith("_") and not alias.name.startswith("__")}
    return found


def test_no_import_cycles_among_our_modules():
    found = cycles(import_graph(ROOT))
    assert not found, "import cycles (move what both need into a module of its own):\n" + "\n".join(
        " <-> ".join(group) for group in found)


def test_no_private_name_is_imported_from_another_module():
    found = private_imports(ROOT)
    new = sorted(found - ALLOWED_PRIVATE_IMPORTS)
    assert not new, "private names imported across modules (make them public, or move them):\n" + "\n".join(
        f"{where}: from {module} import {name}" for where, module, name in new)
    gone = sorted(ALLOWED_PRIVATE_IMPORTS - found)
    assert not gone, f"no longer imported, remove from ALLOWED_PRIVATE_IMPORTS: {gone}"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checks_find_a_lazy_cycle_a_package_form_cycle_and_private_imports(tmp_path):
    """The checks can fail: a small tree with two cycles (one through a lazy import, one through `from package
    import module`), a chain that is not a cycle, and private imports of three kinds."""
    _write(tmp_path, "benchmarks/__init__.py", "")
    _write(tmp_path, "benchmarks/grid.py", "def run():\n    from benchmarks.ranks import spread\n")  # lazy
    _write(tmp_path, "benchmarks/ranks.py", "from benchmarks.grid import _Grid\n")
    _write(tmp_path, "benchmarks/plain.py", "from benchmarks import grid\n")  # imports grid; nothing imports it
    _write(tmp_path, "pipeline/models/__init__.py", "")
    _write(tmp_path, "pipeline/models/registry.py", "def load():\n    from pipeline.models import timm_models\n")
    _write(tmp_path, "pipeline/models/timm_models.py", "from .registry import LoadedModel, _build\n"
                                                       "from ._hidden import thing\n")
    _write(tmp_path, "pipeline/models/_hidden.py", "from pipeline.models._hidden import __all__\n")  # dunder: fine
    assert cycles(import_graph(tmp_path)) == [["benchmarks.grid", "benchmarks.ranks"],
                                              ["pipeline.models.registry", "pipeline.models.timm_models"]]
    assert private_imports(tmp_path) == {
        ("benchmarks/ranks.py", "benchmarks.grid", "_Grid"),
        ("pipeline/models/timm_models.py", "pipeline.models.registry", "_build"),
    }
