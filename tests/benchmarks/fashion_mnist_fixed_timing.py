"""`[torchrun ... -m] tests.benchmarks.fashion_mnist_fixed_timing ARGS`: the Fashion-MNIST benchmark whose cells'
end-to-end measurements are a fixed timer (the latency table's prediction) and whose table's savings are even
(profiled for real by rank 0 under torchrun, then each block's saving set alike), so that the blocks every cell
keeps do not depend on how loaded the machine is while it runs. Everything else is the real benchmark.

With PRACTISE_TEST_FAIL_RANK=r, rank r raises as it starts its second tiny set (a rank that fails after one round).
"""

import os

from benchmarks import fashion_mnist
from pipeline.latency.profiling import EndToEnd
from profilers.stats import summarize


def fixed_end_to_end(grid, dropped: list[str]) -> EndToEnd:
    """What the table predicts, as if measured in 3 identical rounds."""
    full_ms = grid.table.full.median_ms
    ratio = grid.table.predicted_ratio(dropped)
    return EndToEnd(summarize([full_ms] * 3), summarize([full_ms * ratio] * 3), ratio, "fixed timer (test)")


def _fails_on_the_second_tiny_set(real):
    started = []

    def score(grid, size, seed):
        if started:
            raise RuntimeError(f"this rank was told to fail (tiny set of {size}, seed {seed})")
        started.append((size, seed))
        return real(grid, size, seed)

    return score


if __name__ == "__main__":  # importing this module (the in-process run of the tests) patches nothing
    from pipeline.latency import profiling
    from tests.recorded_tables import evened

    fashion_mnist._Grid._measure = fixed_end_to_end
    profiling.profile_candidates = evened(profiling.profile_candidates)  # a busy machine's table cannot refuse 0.78
    if os.environ.get("PRACTISE_TEST_FAIL_RANK") == os.environ.get("RANK", "0"):
        fashion_mnist._score_tiny_set = _fails_on_the_second_tiny_set(fashion_mnist._score_tiny_set)
    fashion_mnist.main()
