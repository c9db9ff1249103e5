"""The confident-views benchmark's table, on made-up per-run results."""

from benchmarks.lite0_views import render, run_row


def _row(unrecovered: float, random: float, confident: float) -> dict:
    def levels(x):
        return {"all": x, "photos": x + 10, "stamps": x - 1}

    return {"dropped": ["a"], "unrecovered": levels(unrecovered),
            "random": {"levels": levels(random), "recovery_s": 100.0, "rule": random - unrecovered},
            "confident": {"levels": levels(confident), "recovery_s": 120.0, "rule": 0.0}}


def test_render_gives_changes_against_unrecovered_their_means_and_the_win_count():
    text = render({"machine": {"cpu": "cpu", "cores": 2, "torch": "x"}, "threads": 2, "budget": "0.78",
                   "photos": [0], "runs": {"pip/0": _row(50, 52, 55), "tux/0": _row(40, 38, 38)}})
    assert "| pip | 0 | 50.0 / 60.0 / 49.0 | +2.0 / +2.0 / +2.0 | +2.00 | +5.0 / +5.0 / +5.0 | +0.00 | 100 / 120 |" in text
    assert "| mean | | | +0.0 / +0.0 / +0.0 | +0.00 | +1.5 / +1.5 / +1.5 | +0.00 | |" in text
    assert "confident views beat random views in 1 of 2 runs (1 ties)" in text
    assert "in 1 runs with random views and 1 with confident views" in text


def test_a_row_scores_each_recipe_against_the_same_unrecovered_network():
    import torch

    from pipeline.network.surgery import drop_blocks
    from tests.tiny_models import tiny_resnet

    class Loaded:
        module = tiny_resnet().eval()

    base = drop_blocks(Loaded.module, ["layers.0.1"]).state_dict()
    worse = {k: (v + 5 * torch.randn_like(v)) if v.is_floating_point() else v for k, v in base.items()}
    images = torch.randn(6, 3, 32, 32)
    teacher = Loaded.module(images).detach()
    states = {"random": {"base": base, "recovered": base, "dropped": ["layers.0.1"], "seconds": 1.0},
              "confident": {"base": base, "recovered": worse, "dropped": ["layers.0.1"], "seconds": 2.0}}
    row = run_row(states, Loaded, images, teacher, [0, 1], seed=0)
    assert row["random"]["levels"] == row["unrecovered"] and row["random"]["rule"] == 0.0
    assert row["confident"]["recovery_s"] == 2.0 and row["dropped"] == ["layers.0.1"]
