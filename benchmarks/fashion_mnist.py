"""Benchmark: labelled accuracy of PRACTISE on Fashion-MNIST, against baselines, under latency budgets.

A ResNet-56-style CIFAR ResNet (3 stages of 9 torchvision BasicBlocks, reduced widths, 32 px: the
28 px images are zero-padded, the gray channel is replicated to 3 because the library's block
analysis feeds 3-channel images) is trained once on the 60k labelled training images and cached
outside git. For each latency budget (a ratio of its onnxruntime CPU latency), tiny set size (train
images; PRACTISE uses no labels) and seed, blocks are dropped and the pruned network recovered by:

- practise-adaptors: recoverability scores + greedy selection + the library's default recovery
  (`recover` with the fast preset: 1x1 adaptors, feature mimicking, folded afterwards);
- practise-mimic: the same blocks, `recover` with method "mimic" (all parameters);
- bp-labels / kd-logits: the same blocks, finetuned with cross-entropy on the tiny set's labels or
  distilled on the teacher's logits (benchmarks/baselines.py);
- first / largest-saving / least-macs / random: blocks chosen by those rules under the same budget
  (benchmarks/selection_rules.py), recovered with the library's default recovery;
- none: the PRACTISE-selected pruned network without recovery; and the teacher.

Accuracy is measured on the 10k test images, which nothing trains on. Recovery picks its checkpoint
on a held-out part of the tiny set (as `pipeline run` does). Writes results/fashion_mnist.{md,json,png}.

    python -m benchmarks.fashion_mnist [--budgets 0.9,0.78,0.65] [--sizes 50,100,500] [--seeds 0,1,2]
                                       [--methods ...] [--data-dir DIR] [--out DIR] [--smoke]
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 -m benchmarks.fashion_mnist --threads 1 ...
                                       (tiny sets spread over the ranks: benchmarks/fashion_mnist_ranks.py)
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.models.resnet import BasicBlock

from benchmarks.common import RESULTS, machine_info, mean_and_spread, pyplot, save_figure
from benchmarks.fashion_mnist_ranks import run_cli
from pipeline.core import distributed
from pipeline.core.atomic import save_torch_atomic, write_json_atomic, write_text_atomic
from pipeline.core.distributed import World
from pipeline.core.errors import RunFailure

DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training pixels in [0, 1]
RESOLUTION = 32
METHODS = ("teacher", "none", "practise-adaptors", "practise-mimic", "bp-labels", "kd-logits",
           "first", "largest-saving", "least-macs", "random")
RULE_METHODS = {"first": "first", "largest-saving": "largest_saving", "least-macs": "least_macs", "random": "random"}


# ----------------------------------------------------------------------------------------------- data

def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped), as MNIST and Fashion-MNIST ship them: big-endian header, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte
        raise ValueError(f"{path} is not an unsigned-byte idx file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_fashion_mnist(data_dir: Path) -> dict[str, np.ndarray]:
    missing = [name for name in FILES.values() if not (data_dir / name).is_file()]
    if missing:
        raise SystemExit(
            f"Fashion-MNIST not found in {data_dir} (missing {', '.join(missing)}). Install it with "
            "'apt-get install dataset-fashion-mnist' (files in /usr/share/datasets/fashion-mnist/), "
            "or pass --data-dir with the four idx .gz files."
        )
    return {key: read_idx(data_dir / name) for key, name in FILES.items()}


def padded(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> uint8 (N, 1, 32, 32), zero padding (the background is black)."""
    pad = (RESOLUTION - images.shape[-1]) // 2
    return F.pad(torch.from_numpy(images.copy()).unsqueeze(1), (pad, pad, pad, pad))


def normalise(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) -> float (N, 3, H, W), normalised, gray replicated to 3 channels."""
    x = (x_uint8.float() / 255.0 - MEAN) / STD
    return x.expand(-1, 3, -1, -1).contiguous()


# ---------------------------------------------------------------------------------------------- model

class CifarResNet(nn.Module):
    """ResNet-56-style network for 32 px inputs: a 3x3 stem and 3 stages of BasicBlocks (torchvision's)."""

    def __init__(self, widths=(8, 16, 32), depth_per_stage: int = 9, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        inplanes = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != w:
                down = nn.Sequential(nn.Conv2d(inplanes, w, 1, stride, bias=False), nn.BatchNorm2d(w))
            blocks = [BasicBlock(inplanes, w, stride, down)] + [BasicBlock(w, w) for _ in range(depth_per_stage - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = w
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


def fashion_resnet56() -> nn.Module:
    """The benchmark's teacher architecture (usable as `--model benchmarks.fashion_mnist:fashion_resnet56`)."""
    return CifarResNet()


# -------------------------------------------------------------------------------------------- teacher

def cache_dir() -> Path:
    base = Path(os.environ["PRACTISE_HOME"]) if os.environ.get("PRACTISE_HOME") else \
        Path.home() / ".cache" / "practise-pipeline"
    return base / "benchmarks"


def augment(x_uint8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 px (zero fill) and horizontal flips, on a uint8 batch."""
    n = len(x_uint8)
    big = F.pad(x_uint8, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()  # one shift per batch keeps it vectorised
    out = big[:, :, dy:dy + RESOLUTION, dx:dx + RESOLUTION]
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x_uint8: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x_uint8), batch):
        correct += int((model(normalise(x_uint8[i:i + batch])).argmax(1) == labels[i:i + batch]).sum())
    return correct / len(x_uint8)


def train_teacher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int = 128,
                  lr: float = 0.1, seed: int = 0, log=print) -> list[float]:
    """Supervised training: SGD with momentum, warm-up + cosine learning rate, shifts and flips.

    With 2 torch threads, every 50 steps one step is timed at 1 and one at 2 threads and the faster is
    kept: on a 2-core machine shared with other work, 2 threads were measured 4x slower than 1.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(len(x) / batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    total_steps = epochs * steps_per_epoch
    warmup = max(1, int(0.15 * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total_steps - warmup))))) if s >= warmup else (s + 1) / warmup)
    losses, probes = [], [0.0, 0.0]
    adaptive_threads = torch.get_num_threads() == 2
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        start, total = time.monotonic(), 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            if adaptive_threads and s % 50 in (0, 1):  # probe 1 and 2 threads: 2 collapse when others load the CPU
                torch.set_num_threads(1 + s % 50)
                probe = time.monotonic()
            loss = F.cross_entropy(model(normalise(augment(x[idx], gen))), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            if adaptive_threads and s % 50 in (0, 1):
                probes[s % 50] = time.monotonic() - probe
                if s % 50 == 1:
                    torch.set_num_threads(1 if probes[0] < probes[1] else 2)
        losses.append(total / steps_per_epoch)
        log(f"teacher epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f} ({time.monotonic() - start:.0f} s, "
            f"last probe: {probes[0]:.2f} s/step at 1 thread, {probes[1]:.2f} s at 2)")
    model.eval()
    return losses


def obtain_teacher(data: dict, widths, depth: int, epochs: int, train_subset: int | None, log=print,
                   may_train: bool = True) -> tuple[nn.Module, dict]:
    """Train the teacher once and cache its weights (outside git); later runs reuse the cache."""
    key = f"fashion_resnet_w{'-'.join(map(str, widths))}_d{depth}_e{epochs}" + (f"_n{train_subset}" if train_subset else "")
    model = CifarResNet(widths, depth)
    x_train, y_train = padded(data["train_images"]), torch.from_numpy(data["train_labels"].astype(np.int64))
    fingerprint = data_fingerprint(x_train)
    if train_subset:
        keep = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:train_subset]
        x_train, y_train = x_train[keep], y_train[keep]
    return cached_teacher(key, model, fingerprint, x_train, y_train, epochs,
                          {"widths": list(widths), "depth_per_stage": depth}, log, may_train)


def data_fingerprint(x_train: torch.Tensor) -> dict:
    return {"train_images": int(len(x_train)), "train_sum": int(x_train.sum()) % 1_000_000_007}


def cached_teacher(key: str, model: nn.Module, fingerprint: dict, x_train: torch.Tensor, y_train: torch.Tensor,
                   epochs: int, describe: dict, log=print, may_train: bool = True) -> tuple[nn.Module, dict]:
    """The cached weights under `key` when they were trained on the same data, else train and cache them.

    `may_train` False (a rank other than 0, after rank 0 trained or found it): the cache must hold it."""
    folder = cache_dir()
    weights, meta_path = folder / f"{key}.pt", folder / f"{key}.json"
    if weights.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("data_fingerprint") == fingerprint:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            log(f"reusing the cached teacher {weights} (trained in {meta['train_s']:.0f} s)")
            return model.eval(), meta | {"cached": True, "path": str(weights)}
    if not may_train:
        raise RunFailure(f"the teacher rank 0 cached is not in {folder} (or was trained on other data): start "
                         "every rank on one machine, or give them one shared PRACTISE_HOME")
    log(f"training the teacher ({key}) on {len(x_train)} images for {epochs} epochs")
    start = time.monotonic()
    losses = train_teacher(model, x_train, y_train, epochs, log=log)
    meta = {"key": key, **describe, "epochs": epochs,
            "train_images": int(len(x_train)), "train_s": round(time.monotonic() - start, 1), "losses": losses,
            "optimizer": "SGD nesterov momentum 0.9, wd 5e-4, batch 128, lr 0.1 with linear warm-up (15%) and cosine decay; shifts <= 2 px, flips",
            "data_fingerprint": fingerprint}
    save_torch_atomic(weights, model.state_dict())
    write_json_atomic(meta_path, meta)
    return model.eval(), meta | {"cached": False, "path": str(weights)}


# ----------------------------------------------------------------------------- library glue (32 px data)

def padded_preprocessing():
    """The library's preprocessing for these already 32 px images: evaluation neither resizes nor crops."""
    from torchvision.transforms import v2 as T

    from pipeline.data.tiny_set import Preprocessing

    class PaddedPreprocessing(Preprocessing):
        """The library's preprocessing, except evaluation: the images are already 32 px (no resize, no crop)."""

        def eval_transform(self):
            return T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(self.mean, self.std)])

    return PaddedPreprocessing(RESOLUTION, (MEAN,) * 3, (STD,) * 3)


def tiny_set(x_uint8: torch.Tensor, labels: np.ndarray, indices: np.ndarray):
    """A library TinySet of 32 px RGB PIL images (gray replicated) with their labels."""
    from pipeline.data.tiny_set import TinySet

    images = [Image.fromarray(x_uint8[i, 0].numpy()).convert("RGB") for i in indices]
    return TinySet(images, [f"train[{i}]" for i in indices], [int(labels[i]) for i in indices], {})


class Clock:
    """Wall time per stage, summed over the run."""

    def __init__(self):
        self.totals: dict[str, float] = {}

    def __call__(self, stage: str):
        clock = self

        class _Timer:
            def __enter__(self):
                self.start = time.monotonic()
                return self

            def __exit__(self, *exc):
                self.seconds = time.monotonic() - self.start
                clock.totals[stage] = round(clock.totals.get(stage, 0.0) + self.seconds, 2)

        return _Timer()


# --------------------------------------------------------------------------------------------- the grid

@dataclass
class _Grid:
    """What every cell of the grid shares: settings, data, the teacher, the latency table, the running result.

    Each network's end-to-end measurement and unrecovered accuracy is made once and reused, and an adaptor
    recovery is reused when a rule later chooses the same blocks on the same tiny set (it is deterministic).
    """

    args: argparse.Namespace
    settings: dict  # preset, scoring, pool_views, recovery, mimic, baseline, profile
    data: dict
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    teacher: nn.Module
    structure: object
    prep: object
    table: object
    clock: Clock
    world: World = distributed.SINGLE
    result: dict = field(default_factory=dict)  # what rank 0 saves (a rank's own header, unused, on the others)
    sink: dict = field(default_factory=dict)  # where the cells' records and selections go: result, or a rank's part
    measured: dict = field(default_factory=dict)  # dropped blocks -> EndToEnd
    unrecovered_acc: dict = field(default_factory=dict)  # dropped blocks -> test accuracy
    adaptor_results: dict = field(default_factory=dict)  # (dropped, size, seed) -> adaptor recovery already run
    other_ranks: dict = field(default_factory=dict)  # rank 0, under torchrun: rank -> its stage times and memory

    def log(self, message: str) -> None:
        # one write per line: under PYTHONUNBUFFERED print() writes the text and its newline separately, and two
        # ranks sharing a console then splice each other's lines
        sys.stdout.write(self.world.tag() + message + "\n")
        sys.stdout.flush()

    def choose(self, selector, budget) -> dict:
        """Select and correct by end-to-end measurement exactly as `run` does (measured_selection)."""
        from pipeline.latency.measured_selection import select_by_measurement

        attempts, chosen = select_by_measurement(selector, self._measure, budget, self.table.full.median_ms,
                                                 self.args.max_attempts)
        kept = attempts[chosen]
        return {"dropped": kept["dropped"], "attempts": attempts, "chosen_attempt": chosen,
                "predicted_ratio": kept["predicted_ratio"], "original_ms": kept["measured"]["original"]["median_ms"],
                "compressed_ms": kept["measured"]["compressed"]["median_ms"],
                "measured_ratio": kept["measured"]["ratio_median"], "meets_budget": kept["meets_budget"]}

    def _measure(self, dropped: list[str]):
        from pipeline.latency.profiling import measure_end_to_end
        from pipeline.network.surgery import drop_blocks
        from profilers import get_profiler

        key = tuple(sorted(dropped))
        if key not in self.measured:
            with self.clock("latency_measurement"):
                with get_profiler("cpu", self.args.backend, self.settings["profile"]) as profiler:
                    self.measured[key] = measure_end_to_end(self.teacher, drop_blocks(self.teacher, dropped), profiler)
        return self.measured[key]

    def evaluate(self, model) -> tuple[float, float]:
        start = time.monotonic()
        with self.clock("evaluation"):
            acc = accuracy(model, self.x_test, self.y_test)
        return acc, time.monotonic() - start

    def unrecovered(self, dropped: list[str]) -> float:
        from pipeline.network.surgery import drop_blocks

        key = tuple(sorted(dropped))
        if key not in self.unrecovered_acc:
            self.unrecovered_acc[key] = self.evaluate(drop_blocks(self.teacher, dropped))[0]
        return self.unrecovered_acc[key]

    def record(self, cell: dict, method: str, selector_name: str, sel: dict | None, acc: float, extra: dict) -> None:
        rec = cell | {"method": method, "selector": selector_name, "dropped": sel["dropped"] if sel else [],
                      "test_accuracy": acc} | extra
        self.sink["records"].append(rec)
        self.log(f"  budget {cell['budget']} {method}: {100 * acc:.2f}%")

    def recovered_record(self, student: nn.Module, res, seconds: float, dropped: list[str], note: dict) -> tuple:
        """Load the recovered state into `student`; (test accuracy, the record's recovery fields)."""
        student.load_state_dict(res.state_dict)
        acc, eval_s = self.evaluate(student)
        return acc, {"kept": res.kept, "best_step": res.best_step, "selection_kl_before": res.selection_kl_before,
                     "selection_kl_after": res.selection_kl_after, "recovery_s": round(seconds, 2),
                     "eval_s": round(eval_s, 2), "unrecovered_accuracy": self.unrecovered(dropped), **note}


def _settings(args) -> dict:
    """The fast preset with the benchmark's steps, and the baselines' and the profiler's settings."""
    from pipeline.run.presets import get_preset

    preset = get_preset("fast")
    scoring = replace(preset.scoring, steps=args.scoring_steps)
    recovery = replace(preset.recovery, fit=replace(preset.recovery.fit, steps=args.recovery_steps),
                       eval_every=min(preset.recovery.eval_every, args.recovery_steps))
    profile = replace(preset.profile, batch=args.profile_batch, resolution=RESOLUTION, threads=args.profile_threads)
    if args.smoke:
        profile = replace(profile, warmup_runs=2, runs_per_round=3, min_rounds=3, max_rounds=4, time_cap_s=5)
    return {"preset": preset, "scoring": scoring, "pool_views": min(preset.scoring_pool_views,
                                                                    scoring.steps * scoring.batch_size),
            "recovery": recovery, "mimic": replace(recovery, method="mimic"),
            "baseline": replace(recovery, fit=replace(recovery.fit, lr=args.baseline_lr)),  # method unused
            "profile": profile}


def _test_split(args, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    x_test, y_test = padded(data["test_images"]), torch.from_numpy(data["test_labels"].astype(np.int64))
    if args.test_images:
        x_test, y_test = x_test[:args.test_images], y_test[:args.test_images]
    return x_test, y_test


def _latency_table(args, teacher: nn.Module, teacher_meta: dict, structure, settings: dict, clock: Clock, log):
    """The teacher's latency table, from the store or measured (and stored)."""
    from pipeline.core import paths
    from pipeline.latency.profiling import obtain_table
    from pipeline.models import LoadedModel
    from profilers import TableStore, get_profiler

    loaded = LoadedModel(f"benchmarks.fashion_mnist:CifarResNet{tuple(args.widths)}x{args.depth}", teacher,
                         RESOLUTION, (MEAN,) * 3, (STD,) * 3, f"file:{teacher_meta['path']}")
    with clock("profiling"):
        with get_profiler("cpu", args.backend, settings["profile"]) as profiler:
            choice = obtain_table(loaded, structure, profiler, TableStore(paths.table_store_dir()),
                                  reprofile=args.reprofile, log=log)
    log(f"latency table ({choice.source}): full network {choice.table.full.median_ms:.3f} ms")
    return choice


def _result_header(args, settings: dict, teacher_meta: dict, teacher_acc: float, test_images: int, structure,
                   choice) -> dict:
    """The saved result before any cell: machine, command, grid, settings, teacher, candidates, latency table."""
    preset, baseline = settings["preset"], settings["baseline"]
    table = choice.table
    return {
        "benchmark": "fashion_mnist" + ("_smoke" if args.smoke else ""),
        "machine": machine_info(),
        "command": args.command,
        "grid": {"budgets": args.budgets, "sizes": args.sizes, "seeds": args.seeds, "methods": args.methods},
        "settings": {
            "teacher": {k: v for k, v in teacher_meta.items() if k not in ("losses", "data_fingerprint")},
            "test_images": test_images, "resolution": RESOLUTION,
            "input": "28 px zero-padded to 32, gray replicated to 3 channels",
            "scoring": settings["scoring"].to_dict() | {"pool_views": settings["pool_views"]},
            "recovery_adaptors": settings["recovery"].to_dict(), "recovery_mimic": settings["mimic"].to_dict(),
            "baselines": {"fit": baseline.fit.to_dict(), "batchnorm": baseline.batchnorm,
                          "eval_every": baseline.eval_every, "kd_temperature": 4.0},
            "holdout_fraction": preset.holdout_fraction,
            "profile": settings["profile"].method() | {"backend": args.backend or "onnxruntime"},
            "torch_threads": args.threads,
        },
        "teacher_accuracy": teacher_acc,
        "candidates": [c.to_dict() for c in structure.candidates],
        "latency_table": {"source": choice.source, "full_ms": table.full.median_ms,
                          "savings_ms": {b: s.median_ms for b, s in table.savings.items()}},
        "selections": [],
        "records": [],
        "cells_planned": len(args.budgets) * len(args.sizes) * len(args.seeds),
        "cells_done": [],  # (budget, size, seed), saved after each so a stopped run keeps what it finished
        "finished": False,
    }


def _prepare(args, world: World = distributed.SINGLE) -> _Grid:
    """Data, teacher (trained once, then cached), its candidate blocks and latency table, the result header.

    Under torchrun rank 0 obtains the teacher and the table (training and profiling are not distributed:
    ranks timing side by side would disturb each other) while the others wait; they then read the teacher
    from the cache and the table from the file rank 0 wrote, and hold no result header.
    """
    from pipeline.network.blocks import analyse

    torch.set_num_threads(args.threads)
    log = (lambda m: print(world.tag() + m, flush=True))
    clock = Clock()
    settings = _settings(args)
    data = load_fashion_mnist(args.data_dir)
    x_test, y_test = _test_split(args, data)

    def teacher_and_table():
        with clock("teacher_training_or_cache"):
            teacher, teacher_meta = obtain_teacher(data, args.widths, args.depth, args.teacher_epochs,
                                                   args.teacher_subset, log)
        teacher.requires_grad_(False)
        with clock("evaluation"):
            teacher_acc = accuracy(teacher, x_test, y_test)
        log(f"teacher: {100 * teacher_acc:.2f}% on {len(x_test)} test images")
        structure = analyse(teacher, RESOLUTION)
        log(f"{len(structure.candidates)} candidate blocks: {', '.join(structure.candidate_names())}")
        choice = _latency_table(args, teacher, teacher_meta, structure, settings, clock, log)
        return teacher, teacher_meta, teacher_acc, structure, choice

    obtained = world.main_only(teacher_and_table, "the teacher (trained or read from the cache) and the latency table "
                               "(profiling is not distributed: ranks timing side by side disturb each other)", log)
    table_path = world.broadcast(str(obtained[4].path) if world.is_main else None)
    if world.is_main:
        teacher, teacher_meta, teacher_acc, structure, choice = obtained
    else:
        teacher, teacher_meta, teacher_acc, structure, choice = _read_what_rank0_wrote(args, data, table_path, clock,
                                                                                       log)
    grid = _Grid(args, settings, data, padded(data["train_images"]), x_test, y_test, teacher, structure, padded_preprocessing(),
                 choice.table, clock, world)
    if world.is_main:
        grid.result = _result_header(args, settings, teacher_meta, teacher_acc, len(x_test), structure, choice)
    grid.sink = grid.result if world.is_main else {}
    return grid


def _read_what_rank0_wrote(args, data: dict, table_path: str, clock: Clock, log) -> tuple:
    """A rank other than 0: the teacher from the cache and the latency table from the file rank 0 wrote."""
    from pipeline.latency.profiling import TableChoice
    from pipeline.network.blocks import analyse
    from profilers.table import LatencyTable

    with clock("teacher_training_or_cache"):
        teacher, teacher_meta = obtain_teacher(data, args.widths, args.depth, args.teacher_epochs,
                                               args.teacher_subset, log, may_train=False)
    teacher.requires_grad_(False)
    if not Path(table_path).is_file():
        raise RunFailure(f"the latency table rank 0 wrote ({table_path}) is not on this machine: start every rank on "
                         "one machine, or give them one shared PRACTISE_HOME")
    table = LatencyTable.read(Path(table_path))
    log(f"latency table written by rank 0 ({table_path}): full network {table.full.median_ms:.3f} ms")
    return teacher, teacher_meta, None, analyse(teacher, RESOLUTION), TableChoice(table, "rank 0", Path(table_path))


def run_benchmark(args, world: World = distributed.SINGLE) -> dict:
    """The grid; under torchrun (`world` of several ranks) its tiny sets spread over the ranks, rank 0 saving."""
    from pipeline.latency.budget import Budget

    wall_start = time.monotonic()
    grid = _prepare(args, world)
    result, clock = grid.result, grid.clock
    earlier_wall_s = _resume_into(result, args) if args.resume and world.is_main else 0.0
    for stage, seconds in result.pop("earlier_timings_s", {}).items():
        clock.totals[stage] = round(clock.totals.get(stage, 0.0) + seconds, 2)

    def save():
        others = grid.other_ranks.values()  # rank 0's view of the other ranks' stage times and memory (if any)
        result["timings_s"] = _summed([dict(clock.totals), *(o["timings_s"] for o in others)])
        result["wall_s"] = round(earlier_wall_s + time.monotonic() - wall_start, 1)
        result["peak_rss_mb"] = max([_peak_rss_mb(), *(o["peak_rss_mb"] for o in others)])
        write_outputs(result, args.out)

    budgets = [Budget.parse(b) for b in args.budgets]
    if world.distributed:
        run_over_ranks(grid, budgets, save)
    else:
        for size, seed in _pending_tiny_sets(args, result, budgets):
            _run_tiny_set(grid, budgets, size, seed, save)
    if world.is_main:
        result["finished"] = True
        save()
    return result


def _pending_tiny_sets(args, result: dict, budgets: list) -> list[tuple[int, int]]:
    """(size, seed) of the tiny sets with a cell left to run, in the order one process runs them."""
    # seeds outermost: a run stopped early has every size for the seeds it finished
    return [(size, seed) for seed in args.seeds for size in args.sizes
            if not all([b.ratio, size, seed] in result["cells_done"] for b in budgets)]  # else finished earlier


def _summed(totals: list[dict]) -> dict:
    out: dict[str, float] = {}
    for t in totals:
        for stage, seconds in t.items():
            out[stage] = round(out.get(stage, 0.0) + seconds, 2)
    return out


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


_PRACTISE_METHODS = {"none", "practise-adaptors", "practise-mimic", "bp-labels", "kd-logits"}


@dataclass
class _TinySetWork:
    """One tiny set, split and (for PRACTISE's methods) scored: what its cells' selections and recoveries use."""

    size: int
    seed: int
    train: object  # TinySet
    selection_images: torch.Tensor  # (N, 3, H, W), the held-out part
    scores: list | None  # BlockScore per candidate, or None when no PRACTISE method runs


def _score_tiny_set(grid: _Grid, size: int, seed: int) -> _TinySetWork:
    """The first `size` train images of the seed's order, split, and scored once for every budget."""
    from pipeline.data.tiny_set import augmented_views, eval_tensors, split_holdout
    from pipeline.latency.selection import score_blocks
    from pipeline.recovery.recoverability import score_recoverability

    order = np.random.default_rng(seed).permutation(len(grid.x_train))[:size]  # nested: 50 in 100 in 500
    tiny = tiny_set(grid.x_train, grid.data["train_labels"], order)
    train, held = split_holdout(tiny, grid.settings["preset"].holdout_fraction, seed)
    selection_images = eval_tensors(held, grid.prep)
    grid.log(f"== tiny set of {size} train images, seed {seed}: {len(train)} to train, {len(held)} to select")
    scores = None
    if _PRACTISE_METHODS & set(grid.args.methods):
        scoring = grid.settings["scoring"]
        with grid.clock("scoring") as t:
            pool = augmented_views(train, grid.prep, grid.settings["pool_views"], scoring.min_crop_scale, seed)
            recov = score_recoverability(grid.teacher, grid.structure, pool, eval_tensors(train, grid.prep), scoring, {})
        scores = score_blocks({b: recov[b]["recoverability"] for b in grid.structure.candidate_names()}, grid.table)
        grid.log(f"scored {len(scores)} blocks in {t.seconds:.1f} s")
    return _TinySetWork(size, seed, train, selection_images, scores)


def _run_tiny_set(grid: _Grid, budgets: list, size: int, seed: int, save) -> None:
    """One tiny set in this process: scored once, then every budget's cell (selected, recovered, saved)."""
    result = grid.result
    work = _score_tiny_set(grid, size, seed)
    for budget in budgets:
        if [budget.ratio, size, seed] in result["cells_done"]:
            continue
        cell = {"budget": budget.ratio, "size": size, "seed": seed}
        result["records"].extend(_teacher_records(grid, budgets, result["records"]))
        _cell_records(grid, cell, _cell_selections(grid, cell, budget, work.scores), work)
        result["cells_done"].append([budget.ratio, size, seed])
        save()


PARTS = ("records", "selections", "cells_done")  # what each rank hands rank 0 per round


def run_over_ranks(grid: _Grid, budgets: list, save) -> None:
    """Every pending cell of the grid, its tiny set run by one rank; rank 0 merges and saves after each round.

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


def _teacher_records(grid: _Grid, budgets: list, records: list) -> list[dict]:
    """The teacher's accuracy, once per budget column (it drops nothing), unless `records` hold them already."""
    if "teacher" not in grid.args.methods or any(r["method"] == "teacher" for r in records):
        return []
    return [{"budget": b.ratio, "size": None, "seed": None, "method": "teacher", "selector": None, "dropped": [],
             "test_accuracy": grid.result["teacher_accuracy"]} for b in budgets]


def _cell_selections(grid: _Grid, cell: dict, budget, scores) -> dict[str, dict]:
    """Each selector's blocks for one cell (PRACTISE's greedy choice, then each rule), chosen and corrected by
    end-to-end measurement: the only timing a cell does, so under torchrun rank 0 alone runs this."""
    from benchmarks.selection_rules import select_by_rule
    from pipeline.latency.selection import select_blocks

    chosen = {}
    if scores is not None:
        chosen["practise-greedy"] = grid.choose(
            lambda extra: select_blocks(scores, grid.table, budget, "greedy", extra), budget)
    for method, rule in RULE_METHODS.items():
        if method in grid.args.methods:
            chosen[f"rule:{rule}"] = grid.choose(
                lambda extra: select_by_rule(rule, grid.structure, grid.table, budget, cell["seed"], extra), budget)
    return chosen


def _cell_records(grid: _Grid, cell: dict, chosen: dict[str, dict], work: _TinySetWork) -> None:
    """One cell's selections and records, into `grid.sink`, in the order the saved result lists them."""
    _practise_cell(grid, cell, chosen.get("practise-greedy"), work.train, work.selection_images)
    _rule_cell(grid, cell, chosen, work.train, work.selection_images)


def _practise_cell(grid: _Grid, cell: dict, sel: dict | None, train, selection_images) -> None:
    """PRACTISE's selection, unrecovered and recovered by each method (the library's recovery and baselines)."""
    if sel is None:
        return
    grid.sink["selections"].append(cell | {"selector": "practise-greedy"} | sel)
    if "none" in grid.args.methods:
        grid.record(cell, "none", "practise-greedy", sel, grid.unrecovered(sel["dropped"]), {})
    for method in ("practise-adaptors", "practise-mimic", "bp-labels", "kd-logits"):
        if method in grid.args.methods:
            _recover_by_method(grid, cell, method, sel, train, selection_images)


def _recover_by_method(grid: _Grid, cell: dict, method: str, sel: dict, train, selection_images) -> None:
    from benchmarks.baselines import distill_logits, finetune_labels
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.recover import recover

    dropped, seed, s = sel["dropped"], cell["seed"], grid.settings
    teacher, structure, prep = grid.teacher, grid.structure, grid.prep
    student = drop_blocks(teacher, dropped)
    student.requires_grad_(True)
    with grid.clock("recovery:" + method) as t:
        if method in ("practise-adaptors", "practise-mimic"):
            settings = s["recovery"] if method == "practise-adaptors" else s["mimic"]
            res = recover(teacher, student, dropped, structure, train, selection_images, prep, settings, seed)
        elif method == "bp-labels":
            res = finetune_labels(teacher, student, train, selection_images, prep, s["baseline"], seed)
        else:
            res = distill_logits(teacher, student, train, selection_images, prep, s["baseline"], seed)
    acc, extra = grid.recovered_record(student, res, t.seconds, dropped, {})
    grid.record(cell, method, "practise-greedy", sel, acc, extra)
    if method == "practise-adaptors":
        grid.adaptor_results[(tuple(sorted(dropped)), cell["size"], seed)] = {"acc": acc, "extra": extra,
                                                                             "method": method}


def _rule_cell(grid: _Grid, cell: dict, chosen: dict[str, dict], train, selection_images) -> None:
    """Blocks chosen by each simple rule under the same budget, recovered by the library's default recovery."""
    for method, rule in RULE_METHODS.items():
        if method not in grid.args.methods:
            continue
        sel = chosen[f"rule:{rule}"]
        grid.sink["selections"].append(cell | {"selector": f"rule:{rule}"} | sel)
        same = (tuple(sorted(sel["dropped"])), cell["size"], cell["seed"])
        if same in grid.adaptor_results:  # same blocks, same tiny set: the same deterministic recovery
            earlier = grid.adaptor_results[same]
            grid.record(cell, method, f"rule:{rule}", sel, earlier["acc"],
                        earlier["extra"] | {"reused_from": earlier["method"]})
            continue
        acc, extra, note = _recover_rule_selection(grid, cell, sel, train, selection_images)
        grid.record(cell, method, f"rule:{rule}", sel, acc, extra)
        if not note:
            grid.adaptor_results[same] = {"acc": acc, "extra": extra, "method": method}


def _recover_rule_selection(grid: _Grid, cell: dict, sel: dict, train, selection_images) -> tuple:
    """Adaptor recovery of a rule's blocks, mimicking all parameters where no adaptor site surrounds them."""
    from pipeline.core.errors import UsageError
    from pipeline.network.surgery import drop_blocks
    from pipeline.recovery.recover import recover

    teacher, dropped, seed = grid.teacher, sel["dropped"], cell["seed"]
    student = drop_blocks(teacher, dropped)
    student.requires_grad_(True)
    note = {}
    with grid.clock("recovery:rules") as t:
        try:
            res = recover(teacher, student, dropped, grid.structure, train, selection_images, grid.prep,
                          grid.settings["recovery"], seed)
        except UsageError as exc:  # e.g. no adaptor site around the chosen blocks
            note["error"] = str(exc)
            res = recover(teacher, student, dropped, grid.structure, train, selection_images, grid.prep,
                          grid.settings["mimic"], seed)
            note["fallback"] = "mimic"
    acc, extra = grid.recovered_record(student, res, t.seconds, dropped, note)
    return acc, extra, note


_ADDED_RECOVERY_OPTIONS = {"point_weight": 0.0, "mixing": "none"}


def _resume_into(result: dict, args) -> float:
    """Carry the finished cells of the saved run in `args.out` into `result`; returns its wall time.

    Refused when the saved run used other settings (teacher, fits, latency method, threads), since its
    cells would not be comparable. The grid becomes the union of both runs' grids.
    """
    path = args.out / f"{result['benchmark']}.json"
    if not path.exists():
        return 0.0
    saved = json.loads(path.read_text())
    settings = json.loads(json.dumps(result["settings"]))  # tuples become lists, as in the saved file
    settings["teacher"].pop("cached", None)  # the same teacher, trained then or loaded from the cache now
    saved["settings"]["teacher"].pop("cached", None)
    for key in ("recovery_adaptors", "recovery_mimic"):  # options added later, equal to no option at defaults
        for option, default in _ADDED_RECOVERY_OPTIONS.items():
            if option not in saved["settings"].get(key, {}) and settings[key].get(option) == default:
                settings[key].pop(option)
    if saved["settings"] != settings:
        differing = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
        raise SystemExit(f"--resume: {path} was run with other settings ({', '.join(differing)}); "
                         "rerun without --resume into another --out.")
    for key in ("records", "selections", "cells_done"):
        result[key] = saved[key] + result[key]
    grid = {k: sorted(set(saved["grid"][k]) | set(result["grid"][k])) for k in ("budgets", "sizes", "seeds")}
    result["grid"] = grid | {"methods": result["grid"]["methods"]}
    result["cells_planned"] = len(grid["budgets"]) * len(grid["sizes"]) * len(grid["seeds"])
    result["command"] = f"{saved.get('command')}`, resumed by `{result['command']}"
    result["earlier_timings_s"] = saved.get("timings_s", {})
    return float(saved.get("wall_s", 0.0))


# ------------------------------------------------------------------------------------------- outputs

def summary(result: dict) -> dict:
    """method -> 'budget|size' -> (mean, std, n) of test accuracy over seeds."""
    groups: dict[str, dict[str, list[float]]] = {}
    for r in result["records"]:
        col = f"{r['budget']}|{r['size']}"
        groups.setdefault(r["method"], {}).setdefault(col, []).append(r["test_accuracy"])
    return {m: {c: mean_and_spread(v) for c, v in cols.items()} for m, cols in groups.items()}


def render(result: dict) -> str:
    budgets = result["grid"]["budgets"]
    lines = [*_render_header(result), *_accuracy_table(result, budgets), *_recovery_notes(result),
             *_unrecovered_table(result, budgets), *_latency_rows(result), *_blocks_chosen(result),
             *_render_footer(result)]
    return "\n".join(lines) + "\n"


def _render_header(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    t = s["teacher"]
    budgets = result["grid"]["budgets"]
    sizes = sorted({r["size"] for r in result["records"] if r["size"] is not None})
    seeds_done = sorted({r["seed"] for r in result["records"] if r["seed"] is not None})
    full = result["latency_table"]["full_ms"]
    return [
        f"# {result['benchmark']}: test accuracy after dropping blocks under a latency budget (Fashion-MNIST)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['machine']}); Python {m['python']}, torch {m['torch']}, "
        f"torchvision {m['torchvision']}, onnxruntime {m['onnxruntime']}; {s['torch_threads']} torch threads.",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Cells finished: {len(result['cells_done'])} of {result['cells_planned']} planned (budget, size, seed) "
        f"cells{'' if result.get('finished') else ' — the run was stopped or is still running; the tables hold the finished cells only'}. "
        f"Grid run: budgets {', '.join(map(str, budgets))}; tiny sets of {', '.join(map(str, sizes))} train images; "
        f"seeds {', '.join(map(str, seeds_done))}; methods {', '.join(result['grid']['methods'])}. "
        f"Full grid: `python -m benchmarks.fashion_mnist` (budgets 0.9, 0.78, 0.65; sizes 50, 100, 500; seeds 0, 1, 2; "
        "all methods).",
        "",
        f"Teacher: CIFAR ResNet with 3 stages of {t['depth_per_stage']} torchvision BasicBlocks, widths "
        f"{'/'.join(map(str, t['widths']))}, 32 px ({s['input']}); trained on {t['train_images']} labelled train "
        f"images for {t['epochs']} epochs ({t['optimizer']}) in {t['train_s']:.0f} s"
        f"{' (weights reused from the cache)' if t.get('cached') else ''}. Test accuracy "
        f"**{100 * result['teacher_accuracy']:.2f}%** on {s['test_images']} test images. "
        f"{len(result['candidates'])} candidate blocks found by `pipeline.network.blocks.analyse`.",
        "",
        f"Latency: {s['profile']['backend']} CPU, batch {s['profile']['batch']}, {s['profile']['threads']} threads; "
        f"full network {full:.3f} ms (latency table {result['latency_table']['source']}). "
        f"Recovery: {s['recovery_adaptors']['fit']['steps']} steps, batch {s['recovery_adaptors']['fit']['batch_size']}, "
        f"lr {s['recovery_adaptors']['fit']['lr']}, BatchNorm {s['recovery_adaptors']['batchnorm']}, checkpoint chosen every "
        f"{s['recovery_adaptors']['eval_every']} steps on the held-out {100 * s['holdout_fraction']:.0f}% of the tiny set "
        f"(KL to the teacher); the same for every method except that bp-labels and kd-logits use lr {s['baselines']['fit']['lr']:g} (see the notes). Scoring: {s['scoring']['steps']} adaptor steps per block, "
        f"batch {s['scoring']['batch_size']}, {s['scoring']['pool_views']} pooled views. Training views: the library's "
        "RandomResizedCrop (scale 0.25-1) and horizontal flip. KD temperature "
        f"{s['baselines']['kd_temperature']:g}.",
        "",
        "Test accuracy (%), mean ± standard deviation over seeds (n = number of seeds):",
        "",
    ]


def _accuracy_table(result: dict, budgets: list) -> list[str]:
    stats = summary(result)
    sizes = sorted({r["size"] for r in result["records"] if r["size"] is not None})
    cols = [(b, z) for b in budgets for z in sizes]
    lines = ["| method | " + " | ".join(f"budget {b}, {z} imgs" for b, z in cols) + " |", "|---|" + "---|" * len(cols)]
    for method in METHODS:
        if method not in stats:
            continue
        cells = []
        for b, z in cols:
            key = f"{b}|None" if method == "teacher" else f"{b}|{z}"
            if key in stats[method]:
                mean, sd, n = stats[method][key]
                cells.append(f"{100 * mean:.2f} ± {100 * sd:.2f} (n={n})")
            else:
                cells.append("-")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + ["", "Methods: teacher = the original; none = PRACTISE's blocks, no recovery; practise-adaptors = "
                    "PRACTISE's blocks + `recover` (fast preset: adaptors); practise-mimic = `recover` with method mimic "
                    "(all parameters); bp-labels = cross-entropy on the tiny set's labels; kd-logits = KL to the teacher's "
                    "logits; first / largest-saving / least-macs / random = blocks chosen by that rule "
                    "(benchmarks/selection_rules.py), recovered by `recover` (adaptors).", ""]


def _recovery_notes(result: dict) -> list[str]:
    """How often recovery lowered test accuracy or kept the unrecovered network, and which recoveries were reused."""
    records = result["records"]
    worse = [r for r in records if r.get("unrecovered_accuracy") is not None
             and r["test_accuracy"] < r["unrecovered_accuracy"]]
    kept_un = [r for r in records if r.get("kept") == "unrecovered"]
    lines = [f"Recovered networks less accurate on the test set than the same blocks unrecovered: {len(worse)} of "
             f"{sum(1 for r in records if r.get('unrecovered_accuracy') is not None)}"
             + (" (" + "; ".join(f"{r['method']} b{r['budget']} n{r['size']} s{r['seed']}: "
                                 f"{100 * r['unrecovered_accuracy']:.2f} -> {100 * r['test_accuracy']:.2f}"
                                 for r in worse[:12]) + ")" if worse else "") + ". "
             f"Recoveries that kept the unrecovered network (no checkpoint beat it on the selection split): "
             f"{len(kept_un)}" + (" (" + ", ".join(sorted({r['method'] for r in kept_un})) + ")" if kept_un else "")
             + "."]
    reused = [r for r in records if r.get("reused_from")]
    if reused:
        pairs = sorted({f"{r['method']} = {r['reused_from']}" for r in reused})
        lines.append(f"{len(reused)} records chose exactly the blocks an earlier method chose on the same tiny set, so "
                     f"its (deterministic) adaptor recovery was reused, not rerun: {'; '.join(pairs)}.")
    return lines + [""]


def _unrecovered_table(result: dict, budgets: list) -> list[str]:
    """Accuracy of each selector's pruned network before recovery, per budget."""
    un: dict[str, dict[float, list[float]]] = {}
    for r in result["records"]:
        if r.get("unrecovered_accuracy") is not None:
            un.setdefault(r["selector"], {}).setdefault(r["budget"], []).append(r["unrecovered_accuracy"])
    if not un:
        return []
    lines = ["Accuracy (%) of each selector's pruned network before recovery (mean over the cells run):", "",
             "| selector | " + " | ".join(f"budget {b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for sel, per in un.items():
        lines.append(f"| {sel} | " + " | ".join(f"{100 * statistics.fmean(per[b]):.2f}" if b in per else "-"
                                                 for b in budgets) + " |")
    return lines + [""]


def _distinct_selections(result: dict) -> list[dict]:
    """Selections in order, each (budget, selector, blocks) once."""
    seen, distinct = set(), []
    for sel in result["selections"]:
        key = (sel["budget"], sel["selector"], tuple(sorted(sel["dropped"])))
        if key not in seen:
            seen.add(key)
            distinct.append(sel)
    return distinct


def _latency_rows(result: dict) -> list[str]:
    lines = ["Latency of the chosen networks (measured end to end beside the original with the library's "
             "`measure_end_to_end`; ratio = median of paired per-round ratios; a miss adds the shortfall and "
             "selects again, a result far under the budget tries fewer blocks, at most 3 times, as `pipeline run` "
             "does with `pipeline/latency/measured_selection.py`):", "",
             "| budget | selector | blocks dropped | predicted ratio | measured ratio | measured ms (original) | met |",
             "|---|---|---|---|---|---|---|"]
    for sel in _distinct_selections(result):
        lines.append(f"| {sel['budget']} | {sel['selector']} | {len(sel['dropped'])} | {sel['predicted_ratio']:.3f} | "
                     f"{sel['measured_ratio']:.3f} | {sel['compressed_ms']:.3f} ({sel['original_ms']:.3f}) | "
                     f"{'yes' if sel['meets_budget'] else 'NO'}" + (f", {len(sel['attempts'])} attempts"
                                                                     if len(sel['attempts']) > 1 else "") + " |")
    return lines


def _blocks_chosen(result: dict) -> list[str]:
    return ["", "Blocks chosen (distinct selections):", "",
            *[f"- {sel['budget']} {sel['selector']}: {', '.join(sel['dropped'])}" for sel in _distinct_selections(result)]]


def _render_footer(result: dict) -> list[str]:
    return ["", "Notes on these results (written by hand after the runs, from runs described there): "
            "[fashion_mnist_notes.md](fashion_mnist_notes.md).",
            "", "| stage | wall time (s), summed over the run |", "|---|---|",
            *[f"| {k} | {v:.1f} |" for k, v in result.get("timings_s", {}).items()],
            "", f"Total wall time {result.get('wall_s', 0):.0f} s; peak resident memory "
            f"{result.get('peak_rss_mb', 0):.0f} MB (getrusage)."]


def plot(result: dict, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    stats = summary(result)
    sizes = sorted({r["size"] for r in result["records"] if r["size"] is not None})
    budgets = sorted(float(b) for b in result["grid"]["budgets"])
    fig, axes = plt.subplots(1, max(1, len(sizes)), figsize=(5 * max(1, len(sizes)), 4.2), squeeze=False, sharey=True)
    for ax, size in zip(axes[0], sizes or [None]):
        for method in METHODS:
            if method not in stats:
                continue
            xs, ys, es = [], [], []
            for b in budgets:
                key = f"{b}|None" if method == "teacher" else f"{b}|{size}"
                if key in stats[method]:
                    mean, sd, _ = stats[method][key]
                    xs.append(b)
                    ys.append(100 * mean)
                    es.append(100 * sd)
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method,
                            linestyle="--" if method in ("teacher", "none") else "-")
        ax.set_title(f"tiny set of {size} images")
        ax.set_xlabel("latency budget (ratio of the original)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle("Fashion-MNIST, ResNet-56-style teacher: test accuracy vs latency budget", fontsize=10)
    save_figure(plt, fig, path, dpi=110)
    return True


def write_outputs(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    name = result["benchmark"]
    write_text_atomic(out / f"{name}.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / f"{name}.md", render(result))
    plot(result, out / f"{name}.png")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with the four idx .gz files")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the .md, .json and .png go")
    parser.add_argument("--budgets", type=_floats, default=None, help="comma-separated ratios (default 0.9,0.78,0.65)")
    parser.add_argument("--sizes", type=_ints, default=None, help="tiny set sizes (default 50,100,500)")
    parser.add_argument("--seeds", type=_ints, default=None, help="seeds (default 0,1,2)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--scoring-steps", type=int, default=None, help="adaptor steps per block (default 30)")
    parser.add_argument("--recovery-steps", type=int, default=None, help="recovery steps (default 200)")
    parser.add_argument("--baseline-lr", type=float, default=0.0005,
                        help="lr of bp-labels and kd-logits (default 5e-4; at the recovery lr 5e-3 both collapsed)")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default 3")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 2; 1 with --smoke)")
    parser.add_argument("--profile-threads", type=int, default=None,
                        help="threads of the latency runtime (default: as --threads)")
    parser.add_argument("--backend", default=None, help="CPU latency backend: onnxruntime (default) or torch")
    parser.add_argument("--profile-batch", type=int, default=1)
    parser.add_argument("--reprofile", action="store_true", help="measure a new latency table even if one is stored")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished cells of the run saved in --out (same settings) and run only the rest")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run that only checks the benchmark works (shallow 1-epoch teacher, few steps)")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    smoke = args.smoke
    args.budgets = args.budgets or ([0.78] if smoke else [0.9, 0.78, 0.65])
    args.sizes = args.sizes or ([50] if smoke else [50, 100, 500])
    args.seeds = args.seeds if args.seeds is not None else ([0] if smoke else [0, 1, 2])
    args.scoring_steps = args.scoring_steps if args.scoring_steps is not None else (2 if smoke else 30)
    args.recovery_steps = args.recovery_steps if args.recovery_steps is not None else (4 if smoke else 200)
    args.teacher_epochs = args.teacher_epochs or (1 if smoke else 3)
    args.widths, args.depth = (8, 16, 32), (3 if smoke else 9)
    args.teacher_subset = 1000 if smoke else None
    args.test_images = 300 if smoke else None
    args.backend = args.backend or ("torch" if smoke else None)
    args.max_attempts = 3
    args.threads = args.threads or (1 if smoke else 2)
    args.profile_threads = args.profile_threads or args.threads
    args.command = "python -m benchmarks.fashion_mnist " + shlex.join(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> dict | None:
    """The grid in this process, or spread over the ranks under `torchrun` (rank 0 returns and prints the result)."""
    result = run_cli(run_benchmark, parse_args(argv))
    if result is not None:
        print(render(result))
    return result


if __name__ == "__main__":
    from benchmarks import fashion_mnist  # the importable module, not this __main__ copy: the one tests patch

    fashion_mnist.main()
