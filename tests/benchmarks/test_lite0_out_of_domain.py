"""The EfficientNet-Lite0 out-of-domain benchmark, as a reduced smoke test (pip-packaged images only)."""

import json

import pytest


# three of the recipes (the benchmark's plumbing is the same for each; the synthetic and confident views are tested
# in tests/recovery): the whole smoke run took 46 s of one CI worker with all eight
SMOKE_RECIPES = ["none", "adaptors (default)", "mimic all, BN frozen, lr 5e-4"]


@pytest.mark.slow
def test_lite0_out_of_domain_benchmark_smoke(tmp_path, capsys):
    from benchmarks.lite0_out_of_domain import main

    main(["--smoke", "--tiny-sets", "pip", "--out", str(tmp_path), "--recipes", *SMOKE_RECIPES])
    result = json.loads((tmp_path / "lite0_out_of_domain_smoke.json").read_text())
    run = result["tiny_sets"]["pip"]
    assert run["images"] == 54 and run["dropped"] and run["predicted_ratio"] <= 0.78
    assert set(run["recipes"]) == set(SMOKE_RECIPES)
    assert run["recipes"]["none"]["kept"] == "unrecovered"
    teacher = result["teacher_predictions"]
    for recipe in run["recipes"].values():  # each agreement is what its saved predictions give
        agree = sum(p == q for p, q in zip(recipe["predictions"], teacher)) / len(teacher)
        assert len(recipe["predictions"]) == len(teacher) and recipe["top1_agreement"] == pytest.approx(agree)
    assert result["heldout"]["labelled"] >= 20  # foolbox's ImageNet photos at least
    md = (tmp_path / "lite0_out_of_domain_smoke.md").read_text()
    assert "| pip (54 images)" in md
    none = run["recipes"]["none"]
    assert f"{100 * none['top1_agreement']:.1f}%" in next(line for line in md.splitlines() if "| none" in line)
    from PIL import Image

    with Image.open(tmp_path / "lite0_out_of_domain_smoke.png") as png:  # one tiny set: 4.4 x 4 inches at 110 dpi
        assert png.format == "PNG" and png.size == (484, 440)

    # --resume keeps the saved selection and recipes: nothing is scored or recovered again
    capsys.readouterr()
    main(["--smoke", "--tiny-sets", "pip", "--out", str(tmp_path), "--resume", "--recipes", *SMOKE_RECIPES])
    assert "reusing the saved selection" in capsys.readouterr().out
    again = json.loads((tmp_path / "lite0_out_of_domain_smoke.json").read_text())
    assert again["tiny_sets"]["pip"]["recipes"] == run["recipes"]  # exactly: read back, not recovered again

    # several seeds summarised, split by domain: a recipe's change is measured against the same seed's unrecovered
    other = dict(result, seed=1)
    other["tiny_sets"] = json.loads(json.dumps(result["tiny_sets"]))
    recipes = other["tiny_sets"]["pip"]["recipes"]
    photo = result["heldout"]["files"].index(next(f for f in result["heldout"]["files"] if f.startswith("imagenet_")))
    teacher = result["teacher_predictions"][photo]
    recipes["none"]["predictions"][photo] = teacher + 1  # seed 1's unrecovered network misses one photo
    recipes["adaptors (default)"]["predictions"] = list(recipes["none"]["predictions"])
    recipes["adaptors (default)"]["predictions"][photo] = teacher  # and its recovered network gets it back
    (tmp_path / "seed1.json").write_text(json.dumps(other))
    main(["--summarise", str(tmp_path / "lite0_out_of_domain_smoke.json"), str(tmp_path / "seed1.json"),
          "--out", str(tmp_path)])
    summary = (tmp_path / "lite0_out_of_domain_seeds.md").read_text()
    photos = sum(f.startswith("imagenet_") for f in result["heldout"]["files"])
    row = next(line for line in summary.splitlines() if line.startswith("| pip | adaptors (default)"))
    assert f"+{100 / photos:.1f})" in row.split("|")[4]  # seed 1's +1 photo, in the photos column
    assert len(json.loads((tmp_path / "lite0_out_of_domain_seeds.json").read_text())["runs"]) == 2
