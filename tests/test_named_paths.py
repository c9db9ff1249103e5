"""Every repository path the guides and the code name exists: a path that moved in a redesign and stayed in a
docstring, a help text or a line printed into benchmark results sends the reader to nothing.

Result files under benchmarks/results/ are dated records and are not checked; tests may name paths they create.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

CHECKED = ("README.md", "docs", "benchmarks", "pipeline", "profilers", "exporters")
# a path of ours: top folder, then names; braces, globs and placeholders (`x.{md,json}`, `*.py`, `gpu_<device>`) are
# patterns, not paths
NAMED_PATH = re.compile(r"(?<![\w./-])((?:pipeline|profilers|exporters|benchmarks|tests|docs)/[\w/.-]*\w)")


def missing_paths(root: Path) -> list[str]:
    """`file:line: path` for each path named in the checked files that does not exist under `root`."""
    files = []
    for entry in CHECKED:
        path = root / entry
        files += [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.suffix in (".py", ".md")
                                                and "results" not in p.relative_to(root).parts]
    problems = []
    for path in files:
        text = path.read_text()
        for match in NAMED_PATH.finditer(text):
            named = match.group(1).rstrip(".")
            if any(c in text[match.end():match.end() + 2] for c in "{*<"):
                continue
            if not (root / named).exists() and not (root / f"{named}.py").exists():
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{path.relative_to(root)}:{line}: {named}")
    return problems


def test_every_path_the_guides_and_code_name_exists():
    problems = missing_paths(ROOT)
    assert not problems, "paths that do not exist (moved? update the text):\n" + "\n".join(problems)


def test_the_check_finds_a_moved_module_named_in_code_and_in_a_guide(tmp_path):
    """The check can fail: a module named at its pre-redesign path, beside names that are fine."""
    (tmp_path / "pipeline" / "recovery").mkdir(parents=True)
    (tmp_path / "pipeline" / "recovery" / "synthetic.py").write_text("")
    (tmp_path / "pipeline" / "recovery" / "confident_views.py").write_text(
        '"""Unlike the images of pipeline/synthetic.py; see pipeline/recovery/synthetic.py and\n'
        'benchmarks/results/x.{md,json} and benchmarks/results/gpu_<device>.md."""\n')
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "recovery.md").write_text("Scores come from `pipeline/recover.py`.\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "old.md").write_text("dated: pipeline/run.py\n")  # not checked
    assert missing_paths(tmp_path) == ["docs/recovery.md:1: pipeline/recover.py",
                                       "pipeline/recovery/confident_views.py:1: pipeline/synthetic.py"]
