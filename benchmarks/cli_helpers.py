"""What the blend and views benchmarks share: their command line, --replot, and writing their result files.

Each of them runs a grid of (tiny set, seed) cells, saves `<name>.json` and renders `<name>.md` from it;
`--replot` rewrites the .md from the saved .json alone, so a change of wording needs no rerun.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from pipeline.core.atomic import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def grid_parser(doc: str, seeds: list[int], threads: int, sizes: list[int] | None = None,
                tiny_sets: list[str] | None = None) -> argparse.ArgumentParser:
    """--seeds, --threads, --out and --replot, with --sizes and --data-dir (Fashion-MNIST) or --tiny-sets."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=seeds)
    if sizes is not None:
        parser.add_argument("--sizes", nargs="+", type=int, default=sizes)
    if tiny_sets is not None:
        parser.add_argument("--tiny-sets", nargs="+", default=tiny_sets)
    parser.add_argument("--threads", type=int, default=threads)
    if sizes is not None:
        parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--replot", action="store_true", help="only rewrite the .md from the saved .json")
    return parser


def replot(args: argparse.Namespace, name: str, render: Callable[[dict], str]) -> bool:
    """With --replot, rewrite `<name>.md` from the saved `<name>.json` and say so (True); else False."""
    if not args.replot:
        return False
    write_text_atomic(args.out / f"{name}.md", render(json.loads((args.out / f"{name}.json").read_text())))
    return True


def write_result(out: Path, name: str, result: dict, render: Callable[[dict], str], indent: int | None) -> None:
    """Save the result as `<name>.json` (indentation as the benchmark always wrote it) and its `<name>.md`."""
    write_text_atomic(out / f"{name}.json", json.dumps(result, indent=indent) + "\n")
    write_text_atomic(out / f"{name}.md", render(result))
    print(f"wrote {out / f'{name}.md'}")
