"""The Fashion-MNIST grid under `torchrun`: joining the ranks, and one line (not a hang, not N tracebacks) when a
rank fails. How the tiny sets are spread over the ranks is `fashion_mnist.run_over_ranks`; this module knows
nothing of the grid, so the grid imports it and not the other way round.
"""

from __future__ import annotations

import os
import sys
import traceback

from pipeline.core import distributed
from pipeline.core.distributed import World
from pipeline.core.errors import PipelineError


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
