"""The Fashion-MNIST grid under `torchrun`: its tiny sets (size x seed, each with its cells' recoveries) spread
over the ranks, rank 0 alone timing and saving.

Work goes in rounds of one pending tiny set per rank, the costliest first (cost: images x cells left), so the
ranks of a round take about as long. In each round:

1. every rank splits and scores its tiny set (seeded by the tiny set's seed, as in one process);
2. rank 0 alone chooses every cell's blocks, which `select_by_measurement` times end to end (ranks timing
   side by side would disturb each other's measurements), while the others wait;
3. every rank recovers its cells (each recovery seeded by its cell's seed) into a part of its own;
4. the parts are gathered on rank 0, which lists them in the order one process would (the resumed run's
   records, the teacher's, then the tiny sets in `--seeds` x `--sizes` order) and saves the .json/.md/.png.

So a saved result, at the end of a round, is one a single process could have written: `--resume` (with any
number of processes) skips its finished cells. A rank that fails stops the run with one line (`PeerLost`,
`MainStopped`, or the failing rank's own error).
"""

from __future__ import annotations

import os
import sys
import traceback

from benchmarks.fashion_mnist import (
    _cell_records,
    _cell_selections,
    _Grid,
    _peak_rss_mb,
    _pending_tiny_sets,
    _score_tiny_set,
    _teacher_records,
)
from pipeline.core import distributed
from pipeline.core.distributed import World
from pipeline.core.errors import PipelineError

PARTS = ("records", "selections", "cells_done")


def join_ranks(threads: int) -> World:
    """The torchrun world (gloo: everything here runs on the CPU), or this process alone when not launched so."""
    if not distributed.launched_by_torchrun():
        return distributed.SINGLE
    world = distributed.init_from_env("cpu")
    if world.is_main:
        print(f"{world.tag()}distributed grid over {world.size} processes (gloo): each rank scores and recovers "
              "its own tiny sets; the teacher, the latency table, the cells' end-to-end measurements and the "
              "result files are rank 0's", flush=True)
        cores = os.cpu_count() or 1
        if world.size * threads > cores:  # on one machine (rank 0 cannot see the others' cores)
            print(f"{world.tag()}note: {world.size} ranks x {threads} torch threads > {cores} cores here: pass "
                  f"--threads {max(1, cores // world.size)} if the ranks share this machine", flush=True)
    return world


def run_over_ranks(grid: _Grid, budgets: list, save) -> None:
    """Every pending cell of the grid, its tiny set run by one rank; rank 0 merges and saves after each round."""
    world, result = grid.world, grid.result
    by_ratio = {b.ratio: b for b in budgets}

    def plan() -> list[tuple[int, int, list[float]]]:  # rank 0 (it read the resumed run): tiny sets and their cells
        return [(size, seed, [b.ratio for b in budgets if [b.ratio, size, seed] not in result["cells_done"]])
                for size, seed in _pending_tiny_sets(grid.args, result, budgets)]

    pending = world.broadcast(plan() if world.is_main else None)
    order = sorted(range(len(pending)), key=lambda i: -pending[i][0] * len(pending[i][2]))  # stable: ties in order
    base = {key: list(result[key]) for key in PARTS} if world.is_main else {}
    parts: dict[int, dict] = {}  # rank 0: pending index -> that tiny set's records, selections and cells
    for start in range(0, len(order), world.size):
        members = order[start:start + world.size]  # rank r runs pending[members[r]]
        mine = members[world.rank] if world.rank < len(members) else None
        work = _score_tiny_set(grid, *pending[mine][:2]) if mine is not None else None
        scores = world.gather(work.scores if work is not None else None)

        def choose_round() -> dict:
            return {i: {ratio: _cell_selections(grid, _cell(pending[i], ratio), by_ratio[ratio], scores[r])
                        for ratio in pending[i][2]} for r, i in enumerate(members)}

        chosen = world.on_main(choose_round, "the end-to-end measurements of this round's selections (timing is "
                               "not distributed)", grid.log)
        part: dict = {key: [] for key in PARTS}
        if mine is not None:
            grid.sink = part
            for ratio in pending[mine][2]:
                _cell_records(grid, _cell(pending[mine], ratio), chosen[mine][ratio], work)
                part["cells_done"].append([ratio, *pending[mine][:2]])
        gathered = world.gather((mine, part, dict(grid.clock.totals), _peak_rss_mb()))
        if world.is_main:
            for rank, (index, its_part, timings_s, peak_rss_mb) in enumerate(gathered):
                if index is not None:
                    parts[index] = its_part
                if rank > 0:
                    grid.other_ranks[rank] = {"timings_s": timings_s, "peak_rss_mb": peak_rss_mb}
            _merge(grid, budgets, base, parts)
            save()
    grid.sink = result


def _cell(tiny: tuple, ratio: float) -> dict:
    return {"budget": ratio, "size": tiny[0], "seed": tiny[1]}


def _merge(grid: _Grid, budgets: list, base: dict, parts: dict[int, dict]) -> None:
    """The resumed run's lists, the teacher's records, then the finished tiny sets in one process's order."""
    done = [parts[i] for i in sorted(parts)]  # pending order: --seeds outermost, then --sizes
    for key in PARTS:
        first = _teacher_records(grid, budgets, base["records"]) if key == "records" else []
        grid.result[key] = base[key] + first + [item for part in done for item in part[key]]


def run_cli(run, args) -> dict | None:
    """`run(args, world)` on every rank; one line and the exit code when a rank fails (not a hang, not N copies).

    A plain process is not touched: it raises as before."""
    world = join_ranks(args.threads)
    if not world.distributed:
        return run(args, world)
    try:
        result = run(args, world)
    except PipelineError as exc:
        if not (getattr(exc, "quiet", False) or (getattr(exc, "quiet_on_followers", False) and not world.is_main)):
            resumable = f"the cells finished so far are saved in {args.out}: rerun with --resume, with any number " \
                        "of processes, to run the rest"
            print(f"error: {world.tag()}{str(exc).replace(distributed.RESUMABLE, resumable)}", file=sys.stderr,
                  flush=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - this rank's own failure: its traceback, then the one line
        traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0][:300]
        print(f"error: {world.tag()}{type(exc).__name__}: {first}; the other ranks stop", file=sys.stderr, flush=True)
        sys.exit(1)
    distributed.shutdown()
    return result if world.is_main else None
