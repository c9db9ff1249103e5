"""Benchmark: EfficientNet-Lite0 compressed with out-of-domain tiny sets; recovery recipes side by side.

Tiny sets (what recovery trains on, never evaluated on):
  pip      the embedded default: 54 images shipped by foolbox (CIFAR samples), scikit-image, scikit-learn
  opencv   the sample images of Debian's opencv-doc
  tux      Tux Paint stamps (Debian tuxpaint-stamps-default) composited on white, excluding every stamp
           of the held-out set
  wallpapers  one image per KDE Plasma wallpaper (Debian plasma-workspace-wallpapers, 30 images)
Held-out images (the same for every tiny set, never trained on or used to choose anything):
  foolbox's 20 labelled ImageNet photos, and the Tux Paint stamps whose names are ImageNet class names
  (labelled by that name; a few names are ambiguous, so the teacher's own accuracy is shown beside),
  plus up to 120 other stamps for agreement only.
For each tiny set: recoverability on it, greedy selection at the budget from a latency table, then
each recipe recovers the same dropped blocks. Reported: top-1 agreement with the original, top-1/top-5
accuracy on the labelled images, which network the run kept, and the recovery time.

    python -m benchmarks.lite0_out_of_domain [--budget 0.78] [--tiny-sets pip opencv tux] [--threads T] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import RESULTS, machine_info, pyplot, save_figure

TABLE = RESULTS / "latency_table_efficientnet_lite0_cpu.json"
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
TUX_STAMPS = Path("/usr/share/tuxpaint/stamps")
WALLPAPERS = Path("/usr/share/wallpapers")
INSTALL = {"opencv": "apt-get install opencv-doc", "tux": "apt-get install tuxpaint-stamps-default",
           "wallpapers": "apt-get install plasma-workspace-wallpapers"}


def recipes(smoke: bool) -> dict:
    """Name -> RecoverySettings. Step counts match the fast preset (200) unless smoke."""
    from pipeline.recovery.confident_views import ViewSettings
    from pipeline.recovery.mimic import FitSettings
    from pipeline.recovery.recover import RecoverySettings
    from pipeline.recovery.synthetic import SyntheticSettings
    from pipeline.run.presets import get_preset

    steps = 4 if smoke else get_preset("fast").recovery.fit.steps
    synthetic = (SyntheticSettings(images=4, steps=2, batch_size=4) if smoke
                 else SyntheticSettings(images=128, steps=200, batch_size=64))
    every = 2 if smoke else 20
    adaptors = replace(get_preset("fast").recovery, fit=replace(get_preset("fast").recovery.fit, steps=steps),
                       eval_every=every)
    return {
        "none": RecoverySettings(method="none"),
        "adaptors (default)": adaptors,
        "adaptors + logit MSE 0.1": replace(adaptors, logit_weight=0.1),
        "adaptors + dropped-block outputs": replace(adaptors, point_weight=1.0),
        "mimic all, BN frozen, lr 5e-4": RecoverySettings(
            method="mimic", fit=FitSettings(steps=steps, batch_size=16, lr=5e-4), batchnorm="frozen", eval_every=every),
        "adaptors + BN-matched views": replace(adaptors, synthetic=synthetic),
        "adaptors + BN-matched noise": replace(adaptors, synthetic=replace(synthetic, init="noise",
                                                                             steps=synthetic.steps * 2)),
        "adaptors, confident views": replace(adaptors, views=ViewSettings("confident", *((16, 4) if smoke else ()))),
    }


# -- data --------------------------------------------------------------------------------------------

def _stamp_name(path: Path) -> str:
    return re.sub(r"[_\-]+", " ", path.stem).lower().strip()


def _on_white(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGBA")
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def build_image_sets(cache: Path, smoke: bool) -> dict:
    """Write the tiny sets and held-out folders once under `cache`; return what exists and what is missing."""
    from torchvision.models import ResNet50_Weights

    from pipeline.data.embedded import embedded_tiny_set

    pip_train, foolbox_val = embedded_tiny_set()
    sets = {"tiny": {"pip": pip_train}, "missing": {}, "labelled": cache / "heldout-labelled",
            "extra": cache / "heldout-extra"}
    if not (cache / ".complete").exists():
        labelled = sets["labelled"]
        for image in sorted(foolbox_val.rglob("*.jpg")):
            (labelled / image.parent.name).mkdir(parents=True, exist_ok=True)
            Image.open(image).convert("RGB").save(labelled / image.parent.name / image.name)
        if TUX_STAMPS.exists():
            categories = [c.lower() for c in ResNet50_Weights.IMAGENET1K_V1.meta["categories"]]
            stamps = sorted(TUX_STAMPS.rglob("*.png"))
            named = [s for s in stamps if _stamp_name(s) in categories]
            others = [s for s in stamps if _stamp_name(s) not in categories]
            random.Random(0).shuffle(others)
            for stamp in named:
                folder = labelled / str(categories.index(_stamp_name(stamp)))
                folder.mkdir(parents=True, exist_ok=True)
                _on_white(stamp).save(folder / f"tux_{stamp.stem}.jpg", quality=95)
            for directory, chosen in ((sets["extra"], others[:120]), (cache / "tux-train", others[120:420])):
                directory.mkdir(parents=True, exist_ok=True)
                for i, stamp in enumerate(chosen):
                    _on_white(stamp).save(directory / f"{i:03d}_{stamp.stem}.jpg", quality=95)
        (cache / ".complete").write_text("ok\n")
    if OPENCV_DOC.exists():
        sets["tiny"]["opencv"] = OPENCV_DOC
    else:
        sets["missing"]["opencv"] = INSTALL["opencv"]
    if (cache / "tux-train").exists():
        sets["tiny"]["tux"] = cache / "tux-train"
    else:
        sets["missing"]["tux"] = INSTALL["tux"]
    if _write_wallpapers(cache / "wallpapers"):
        sets["tiny"]["wallpapers"] = cache / "wallpapers"
    else:
        sets["missing"]["wallpapers"] = INSTALL["wallpapers"]
    return sets


def _write_wallpapers(folder: Path) -> bool:
    """One JPEG per wallpaper (its largest landscape file, shrunk to 512 px high); False if none installed."""
    if (folder / ".complete").exists():
        return True
    files = sorted(WALLPAPERS.glob("*/contents/images/*")) if WALLPAPERS.exists() else []
    by_wallpaper: dict[str, Path] = {}
    for path in files:
        try:
            width, height = (int(v) for v in path.stem.split("x"))
        except ValueError:
            continue
        name = path.parts[-4]
        best = by_wallpaper.get(name)
        if width >= height and (best is None or width * height > _area(best)):
            by_wallpaper[name] = path
    if not by_wallpaper:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in sorted(by_wallpaper.items()):
        image = Image.open(path).convert("RGB")
        image.thumbnail((4096, 512))
        image.save(folder / f"{name}.jpg", quality=95)
    (folder / ".complete").write_text("ok\n")
    return True


def _area(path: Path) -> int:
    width, height = (int(v) for v in path.stem.split("x"))
    return width * height


# -- one tiny set ------------------------------------------------------------------------------------

def _evaluate(network, heldout: torch.Tensor, teacher_logits: torch.Tensor, labels: list[int], n_labelled: int) -> dict:
    from pipeline.network.evaluation import compare, predict_logits

    logits = predict_logits(network, heldout)
    agreement = compare(logits, teacher_logits, None)
    labelled = compare(logits[:n_labelled], teacher_logits[:n_labelled], labels)
    return {"top1_agreement": agreement.top1_agreement, "top5_agreement": agreement.top5_agreement,
            "top1": labelled.student_top1, "top5": labelled.student_top5,
            "predictions": logits.argmax(1).tolist()}  # per held-out image: lets readers re-split the held-out set


def run_tiny_set(name: str, folder: Path, loaded, structure, table, budget, heldout, teacher_logits, labels,
                 n_labelled: int, smoke: bool, seed: int, log, wanted_recipes: list[str] | None = None,
                 earlier: dict | None = None, on_recipe=None) -> dict:
    """Score, select and run each recipe; `earlier` (a saved result for the same tiny set and settings)
    supplies the selection and the recipes it already ran (scoring and recovery are deterministic)."""
    from pipeline.data.tiny_set import (
        Preprocessing,
        augmented_views,
        eval_tensors,
        load_image_folder,
        split_holdout,
    )
    from pipeline.latency.selection import score_blocks, select_blocks
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.recover import recover
    from pipeline.recovery.recoverability import score_recoverability
    from pipeline.run.presets import get_preset

    preset = get_preset("fast")
    prep = Preprocessing(loaded.resolution, loaded.mean, loaded.std)
    tiny = load_image_folder(folder, loaded.resolution)
    train, selection = split_holdout(tiny, preset.holdout_fraction, seed)
    scoring = replace(preset.scoring, steps=2) if smoke else preset.scoring
    if earlier is not None and earlier["images"] == len(tiny):
        log(f"[{name}] reusing the saved selection and {len(earlier['recipes'])} recipes")
        result = earlier
    else:
        log(f"[{name}] {len(tiny)} images ({len(train)} train, {len(selection)} selection); scoring")
        start = time.monotonic()
        pool = augmented_views(train, prep, min(preset.scoring_pool_views, scoring.steps * scoring.batch_size),
                               scoring.min_crop_scale, seed)
        scores = score_recoverability(loaded.module, structure, pool, eval_tensors(train, prep), scoring, {})
        scoring_s = time.monotonic() - start
        chosen = select_blocks(score_blocks({b: r["recoverability"] for b, r in scores.items()}, table), table, budget)
        result = {"images": len(tiny), "train": len(train), "selection": len(selection), "scoring_s": scoring_s,
                  "dropped": chosen.dropped, "predicted_ratio": chosen.predicted_ratio, "recipes": {}}
    dropped = result["dropped"]
    selection_images = eval_tensors(selection, prep)
    for recipe, settings in recipes(smoke).items():
        if recipe in result["recipes"] or (wanted_recipes and recipe not in wanted_recipes):
            continue
        log(f"[{name}] recovery: {recipe}")
        student = drop_blocks(loaded.module, dropped)
        start = time.monotonic()
        recovered = recover(loaded.module, student, dropped, structure, train, selection_images, prep,
                            settings, seed)
        seconds = time.monotonic() - start
        student.load_state_dict(recovered.state_dict)
        result["recipes"][recipe] = {"kept": recovered.kept, "best_step": recovered.best_step, "recovery_s": seconds,
                                     "selection_kl_before": recovered.selection_kl_before,
                                     "selection_kl_after": recovered.selection_kl_after,
                                     "threads": torch.get_num_threads(),
                                     "ran_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     **_evaluate(student.eval(), heldout, teacher_logits, labels, n_labelled)}
        log(f"[{name}] {recipe}: {result['recipes'][recipe]}")
        if on_recipe is not None:
            on_recipe(result)
    return result


# -- the benchmark -----------------------------------------------------------------------------------

def run_benchmark(budget_text: str, tiny_sets: list[str], smoke: bool, seed: int, cache: Path, log=print,
                  on_tiny_set=None, wanted_recipes: list[str] | None = None, earlier: dict | None = None,
                  device: str = "cpu") -> dict:
    """All tiny sets in turn; `on_tiny_set(partial result)` after each recipe, so a long run is never all lost.

    `earlier`: a saved result with the same budget, seed and resolution; its tiny sets and recipes are kept
    and only what it lacks is run.
    """
    from pipeline.data.tiny_set import Preprocessing, eval_tensors, load_image_folder
    from pipeline.latency.budget import Budget
    from pipeline.models import load_model
    from pipeline.network.blocks import analyse
    from pipeline.network.compute import resolve_train_device
    from pipeline.network.evaluation import predict_logits
    from profilers import LatencyTable

    torch.manual_seed(seed)
    loaded = load_model("efficientnet_lite0", resolution=128 if smoke else None)
    structure = analyse(loaded.module, loaded.resolution)
    loaded.module.to(resolve_train_device(device, "cpu"))  # scoring and recovery train where the teacher is
    table = LatencyTable.read(TABLE)
    sets = build_image_sets(cache, smoke)
    prep = Preprocessing(loaded.resolution, loaded.mean, loaded.std)
    labelled = load_image_folder(sets["labelled"], loaded.resolution)
    extra = load_image_folder(sets["extra"], loaded.resolution) if sets["extra"].exists() else None
    images = [eval_tensors(labelled, prep)] + ([eval_tensors(extra, prep)] if extra and not smoke else [])
    heldout = torch.cat(images)
    labels = [int(Path(p).parent.name) for p in labelled.paths]
    teacher_logits = predict_logits(loaded.module, heldout)
    teacher = {"top1": float((teacher_logits[: len(labels)].argmax(1) == torch.tensor(labels)).float().mean()),
               "top5": float((teacher_logits[: len(labels)].topk(5, 1).indices == torch.tensor(labels)[:, None])
                             .any(1).float().mean())}
    wanted = [t for t in tiny_sets if t in sets["tiny"]]
    same = earlier is not None and (earlier["budget"], earlier["seed"], earlier["resolution"]) == (
        budget_text, seed, loaded.resolution)
    results: dict = dict(earlier["tiny_sets"]) if same else {}
    summary = {
        "benchmark": "lite0_out_of_domain" + ("_smoke" if smoke else ""), "budget": budget_text, "seed": seed,
        "resolution": loaded.resolution, "latency_table": str(TABLE.relative_to(RESULTS.parent.parent)),
        "heldout": {"images": len(heldout), "labelled": len(labels),
                    "labelled_sources": "foolbox ImageNet photos + Tux Paint stamps named after ImageNet classes",
                    "files": [Path(p).name for p in labelled.paths + (extra.paths if len(images) > 1 else [])]},
        "teacher": teacher, "teacher_predictions": teacher_logits.argmax(1).tolist(), "device": device, "tiny_sets": results,
        "missing_tiny_sets": {t: sets["missing"][t] for t in tiny_sets if t in sets["missing"]},
        "machine": machine_info(), "threads": torch.get_num_threads(),
    }
    def partial(name: str, result: dict) -> None:
        results[name] = result
        summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if on_tiny_set is not None:
            on_tiny_set(summary)

    for name in wanted:
        partial(name, run_tiny_set(name, sets["tiny"][name], loaded, structure, table, Budget.parse(budget_text),
                                   heldout, teacher_logits, labels, len(labels), smoke, seed, log, wanted_recipes,
                                   results.get(name), on_recipe=lambda result, n=name: partial(n, result)))
    return summary


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render_markdown(result: dict) -> str:
    held, teacher = result["heldout"], result["teacher"]
    lines = [
        f"# EfficientNet-Lite0 with out-of-domain tiny sets (budget {result['budget']}, seed {result['seed']})",
        "",
        f"Held-out: {held['images']} images never trained on ({held['labelled']} labelled: {held['labelled_sources']}). "
        f"The original network gets top-1 {_pct(teacher['top1'])}, top-5 {_pct(teacher['top5'])} on the labelled ones.",
        f"Blocks chosen per tiny set by recoverability on it and the latency table `{result['latency_table']}`.",
        "",
        "| tiny set | dropped (predicted ratio) | recipe | kept | top-1 agreement | top-1 | top-5 | recovery s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["tiny_sets"].items():
        dropped = f"{len(r['dropped'])} blocks ({r['predicted_ratio']:.3f})"
        for recipe, x in r["recipes"].items():
            lines.append(f"| {name} ({r['images']} images) | {dropped} | {recipe} | {x['kept']} | "
                         f"{_pct(x['top1_agreement'])} | {_pct(x['top1'])} | {_pct(x['top5'])} | {x['recovery_s']:.0f} |")
    for name, how in result["missing_tiny_sets"].items():
        lines.append(f"\nTiny set `{name}` was not run: its images are not installed ({how}).")
    times = sorted({x["ran_at"] for r in result["tiny_sets"].values() for x in r["recipes"].values() if "ran_at" in x})
    if times:
        lines += ["", f"Recipes with a time in the JSON ran between {times[0]} and {times[-1]} (runs resumed with "
                  "--resume add missing recipes to the saved ones; the others ran in an earlier sitting of the same "
                  "code path)."]
    m = result["machine"]
    lines += ["", f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {result['threads']} torch threads; torch "
              f"{m.get('torch')}; peak RSS {result.get('peak_rss_mb', 0):.0f} MB.", ""]
    return "\n".join(lines)


# -- several seeds ---------------------------------------------------------------------------------

def _is_photo(name: str) -> bool:
    """foolbox's ImageNet photos; everything else held out is a Tux Paint stamp (cartoon-like, on white)."""
    return name.startswith("imagenet_")


def summarise_seeds(runs: list[dict]) -> str:
    """Markdown over saved results of several seeds: mean agreement per tiny set and recipe, split by domain.

    Needs the per-image predictions (results saved since they were added). The held-out set mixes 20
    ImageNet photos with 181 Tux Paint stamps; a recipe's effect differs between the two, so both are shown.
    """
    first = runs[0]
    files = first["heldout"]["files"]
    photos = [i for i, f in enumerate(files) if _is_photo(f)]
    stamps = [i for i in range(len(files)) if i not in photos]
    cells = _seed_cells(runs, photos, stamps)
    seeds = sorted({run["seed"] for run in runs})
    m = first["machine"]
    lines = [
        f"# EfficientNet-Lite0, out-of-domain tiny sets: recovery recipes over seeds {', '.join(map(str, seeds))} "
        f"(budget {first['budget']})",
        "",
        f"Machine: {m.get('gpu') or m.get('cpu')} ({first.get('device', 'cpu')}), torch {m.get('torch')}. Each seed "
        "changes the train/selection split of the tiny set, the scoring views (so sometimes the dropped blocks) and "
        "the recovery batches.",
        f"Held-out: {len(photos)} ImageNet photos (foolbox) and {len(stamps)} Tux Paint stamps, never trained on. "
        "Figures are changes in top-1 agreement with the original, in points, against the same seed's unrecovered "
        "network (mean over seeds; each seed in brackets). One photo is 5 points, one stamp 0.55.",
        "",
        "| tiny set | recipe | all 201 | 20 photos | 181 stamps | deploy by photos, report stamps | agreement (all) | "
        "recovery s (median) |",
        "|---|---|---|---|---|---|---|---|",
        *[_seed_row(name, recipe, rows) for (name, recipe), rows in cells.items()],
        "", "'deploy by photos, report stamps' simulates the run's rule (keep the recovered network only if it "
        "agrees more on the report images) with the photos as report images and the stamps as the deployment "
        "domain: 0 where the unrecovered network was kept.", "",
    ]
    return "\n".join(lines)


def _seed_cells(runs: list[dict], photos: list[int], stamps: list[int]) -> dict[tuple[str, str], list[dict]]:
    """(tiny set, recipe) -> per seed: changes of agreement against that seed's unrecovered network."""
    files, teacher = runs[0]["heldout"]["files"], runs[0]["teacher_predictions"]
    everything = range(len(files))

    def agreement(predictions: list[int], idx) -> float:
        """Percent agreeing on the images `idx`; NaN when there are none (Tux Paint stamps not installed)."""
        idx = list(idx)
        return 100 * sum(predictions[i] == teacher[i] for i in idx) / len(idx) if idx else float("nan")

    cells: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        if run["heldout"]["files"] != files:
            raise ValueError("the results were made on different held-out images; summarise like with like")
        for name, result in run["tiny_sets"].items():
            none = result["recipes"]["none"]["predictions"]
            for recipe, x in result["recipes"].items():
                decide = agreement(x["predictions"], photos) > agreement(none, photos)
                stamps_change = agreement(x["predictions"], stamps) - agreement(none, stamps)
                cells.setdefault((name, recipe), []).append({
                    "seed": run["seed"], "all": agreement(x["predictions"], everything) - agreement(none, everything),
                    "photos": agreement(x["predictions"], photos) - agreement(none, photos),
                    "stamps": stamps_change, "deployed_stamps": stamps_change if decide else 0.0,
                    "level": agreement(x["predictions"], everything), "seconds": x["recovery_s"]})
    return cells


def _seed_row(name: str, recipe: str, rows: list[dict]) -> str:
    def fmt(values: list[float]) -> str:
        return f"{sum(values) / len(values):+.1f} ({' '.join(f'{v:+.1f}' for v in values)})"

    if recipe == "none":
        levels = ", ".join(f"{r['level']:.1f}" for r in rows)
        return f"| {name} | none (agreement %, per seed: {levels}) | | | | | | |"
    seconds = sorted(r["seconds"] for r in rows)[len(rows) // 2]
    return (f"| {name} | {recipe} | {fmt([r['all'] for r in rows])} | {fmt([r['photos'] for r in rows])} | "
            f"{fmt([r['stamps'] for r in rows])} | {fmt([r['deployed_stamps'] for r in rows])} | "
            f"{sum(r['level'] for r in rows) / len(rows):.1f} | {seconds:.0f} |")


def plot(result: dict, path: Path) -> bool:
    """Grouped bars: held-out top-1 agreement per tiny set and recipe (False without matplotlib)."""
    plt = pyplot()
    if plt is None:
        return False
    names = list(result["tiny_sets"])
    recipe_names = list(dict.fromkeys(r for n in names for r in result["tiny_sets"][n]["recipes"]))
    fig, ax = plt.subplots(figsize=(2.2 + 2.2 * len(names), 4))
    width = 0.8 / max(1, len(recipe_names))
    for i, recipe in enumerate(recipe_names):
        values = [100 * result["tiny_sets"][n]["recipes"].get(recipe, {}).get("top1_agreement", float("nan"))
                  for n in names]  # a recipe not (yet) run on a tiny set has no bar
        ax.bar([k + i * width for k in range(len(names))], values, width, label=recipe)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names)
    ax.set_ylabel(f"top-1 agreement on {result['heldout']['images']} held-out images (%)")
    ax.set_title(f"EfficientNet-Lite0, budget {result['budget']}: recovery recipes per tiny set", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    save_figure(plt, fig, path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="0.78")
    parser.add_argument("--tiny-sets", nargs="+", default=["pip", "opencv", "tux", "wallpapers"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="2 scoring and 4 recovery steps at 128 px (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where scoring and recovery train")
    parser.add_argument("--replot", action="store_true", help="only redraw the .md and .png from the saved .json")
    parser.add_argument("--recipes", nargs="+", default=None, help="run only these recipes (default: all)")
    parser.add_argument("--summarise", nargs="+", type=Path, default=None, metavar="JSON",
                        help="only write <out>/lite0_out_of_domain_seeds.md from saved results of several seeds")
    parser.add_argument("--resume", action="store_true",
                        help="keep the tiny sets and recipes of the saved .json (same budget and seed); run the rest")
    args = parser.parse_args(argv)
    from pipeline.core import paths

    if args.threads:
        torch.set_num_threads(args.threads)
    cache = paths.home() / "benchmarks" / "lite0-ood-images"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "lite0_out_of_domain" + ("_smoke" if args.smoke else "") + (f"_seed{args.seed}" if args.seed else "")

    def save(result: dict) -> None:
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(render_markdown(result))
        plot(result, args.out / f"{stem}.png")
        print(f"wrote {args.out / stem}.md", flush=True)

    if args.summarise:
        runs = sorted((json.loads(p.read_text()) for p in args.summarise), key=lambda r: r["seed"])
        merged = {"runs": runs}
        (args.out / "lite0_out_of_domain_seeds.json").write_text(json.dumps(merged) + "\n")
        (args.out / "lite0_out_of_domain_seeds.md").write_text(summarise_seeds(runs))
        print(f"wrote {args.out / 'lite0_out_of_domain_seeds.md'}")
        return
    if args.replot:
        save(json.loads((args.out / f"{stem}.json").read_text()))
        return
    saved = args.out / f"{stem}.json"
    earlier = json.loads(saved.read_text()) if args.resume and saved.exists() else None
    save(run_benchmark(args.budget, args.tiny_sets, args.smoke, args.seed, cache,
                       log=lambda m: print(m, flush=True), on_tiny_set=save, wanted_recipes=args.recipes,
                       earlier=earlier, device=args.device))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    main()
