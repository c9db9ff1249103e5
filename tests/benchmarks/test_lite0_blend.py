"""The blend benchmark's simulation of the deployment rule, on made-up per-image results."""

from benchmarks.lite0_blend import render, simulate_rule


def _blends(agrees_by_weight: dict[str, list[int]]) -> dict:
    return {w: {"agrees": a, "kl": [0.5 - 0.4 * v for v in a]} for w, a in agrees_by_weight.items()}


def test_choosing_on_one_half_reports_the_other_and_a_better_blend_is_found():
    n, photos = 40, list(range(4))
    blends = _blends({"0.0": [1] * 20 + [0] * 20,  # unrecovered: half agree
                      "0.5": [1] * 30 + [0] * 10,  # halfway: ten more everywhere
                      "1.0": [0] * 4 + [1] * 26 + [0] * 10})  # recovered: loses the photos, gains elsewhere
    two = simulate_rule(blends, photos, ("0.0", "1.0"), 50, 0)
    three = simulate_rule(blends, photos, ("0.0", "0.5", "1.0"), 50, 0)
    assert three > two > 0
    assert 20 < three < 30  # halfway always wins the choosing half; the report half holds about 5 of its 10 gains


def test_a_rule_never_picks_a_candidate_that_loses_on_both_halves():
    blends = _blends({"0.0": [1] * 10, "0.5": [0] * 10, "1.0": [0] * 10})
    assert simulate_rule(blends, [0, 1], ("0.0", "0.5", "1.0"), 20, 0) == 0.0


def test_render_lists_every_run_and_the_mean_of_both_rules():
    blends = _blends({w: [1, 0, 1, 0] for w in ("0.0", "0.25", "0.5", "0.75", "1.0")})
    run = {"blends": blends, "rule_two": 1.0, "rule_three": 2.0, "dropped": ["a"], "recovery_s": 1.0}
    text = render({"machine": {"cpu": "cpu", "cores": 2, "torch": "x"}, "threads": 2, "budget": "0.78",
                   "photos": [0], "runs": {"pip/0": run, "tux/0": run}})
    assert "| pip | 0 |" in text and "| tux | 0 |" in text and "| mean | | +1.00 | +2.00 |" in text
