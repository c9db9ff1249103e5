"""The rank helpers: cost-balanced sharding, per-name seeds, and a world of one that calls straight through."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import distributed
from pipeline.core.distributed import SINGLE, World, balanced_shards, derived_seed


def test_shards_balance_cost_not_count():
    costs = {"a": 10.0, "b": 1.0, "c": 1.0, "d": 8.0}  # by count, two each: 11 against 9 at best
    shards = balanced_shards(costs, 2)
    assert shards == [["a"], ["b", "c", "d"]]  # 10 against 10; each shard keeps the given order
    assert balanced_shards(costs, 1) == [["a", "b", "c", "d"]]
    assert balanced_shards({"a": 1.0}, 3) == [["a"], [], []]  # more ranks than blocks: some score nothing


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0, 1e6), max_size=30), st.integers(1, 5))
def test_shards_cover_every_block_once_and_stay_within_one_block_of_the_mean(costs, size):
    shards = balanced_shards(costs, size)
    assert sorted(b for s in shards for b in s) == sorted(costs)
    loads = [sum(costs[b] for b in s) for s in shards]
    if costs:  # longest-first to the least loaded: no rank exceeds the mean by more than the largest block
        assert max(loads) <= sum(costs.values()) / size + max(costs.values()) + 1e-6


def test_seeds_depend_on_the_name_not_the_process():
    assert derived_seed(0, "layers.1.0") == derived_seed(0, "layers.1.0") != derived_seed(0, "layers.1.1")
    assert derived_seed(0, "x") != derived_seed(1, "x")
    assert World(0, 2).seed(7) == SINGLE.seed(7) == 7  # rank 0 draws what a single process draws
    assert World(1, 2).seed(7) not in (7, World(2, 3).seed(7))


def test_a_world_of_one_calls_straight_through():
    assert not SINGLE.distributed and SINGLE.is_main and SINGLE.tag() == ""
    SINGLE.barrier()
    assert SINGLE.broadcast({"a": 1}) == {"a": 1} and SINGLE.gather(3) == [3]
    assert SINGLE.on_main(lambda: 5, "x") == 5 and SINGLE.main_only(lambda: 6, "y") == 6
    with pytest.raises(ZeroDivisionError):  # errors are not wrapped in a single process
        SINGLE.main_only(lambda: 1 / 0, "z")
    assert World(1, 4).tag() == "rank 1/4: "


def test_only_a_torchrun_launch_of_several_ranks_is_distributed(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_torchrun() and distributed.init_from_env("cpu") is SINGLE
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node 1: one process, nothing to distribute
    assert not distributed.launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched_by_torchrun()
