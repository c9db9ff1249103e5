"""Recovery of the pruned network by feature mimicking, judged on images it does not train on.

Methods:
- "adaptors": train only identity-initialised 1x1 adaptors around the dropped blocks (the
  recoverability fit applied to the chosen set), BatchNorm frozen, then fold them into the
  neighbouring convolutions. Few parameters, so little room to overfit a tiny set.
- "mimic": train every parameter of the student (the paper's recipe), BatchNorm frozen or in
  training mode.
- "none": keep the pruned network as it is.

Every `eval_every` steps the student is checked on a selection split (never trained on) by the KL
divergence of its predictions from the teacher's; the best state is kept, and if no state beats the
unrecovered network, the unrecovered network is kept and the result says so.

With a `Schedule` (schedule.py: range test, patience, deadline, divergence) the step count is a cap and the
learning rate is measured; without one, the fixed steps and learning rate of the settings apply.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from pipeline.core.atomic import save_torch_atomic
from pipeline.core.errors import UsageError
from pipeline.core.progress import Log, ProgressFactory, quiet_log, silent
from pipeline.data.tiny_set import Preprocessing, TinySet, augmented_views
from pipeline.network.adaptors import Adaptors, adaptor_sites
from pipeline.network.blocks import NetworkStructure
from pipeline.network.compute import cpu_state, device_of
from pipeline.network.evaluation import predict_logits, prediction_kl
from pipeline.network.features import FeatureTap, OutputTaps
from pipeline.recovery.confident_views import ViewSettings, confident_views
from pipeline.recovery.mimic import BatchSource, FitSettings, LiveBatches, Objective, fit
from pipeline.recovery.mixing import MIXING
from pipeline.recovery.schedule import RangeTest, Schedule, StopTraining
from pipeline.recovery.synthetic import (
    SyntheticSettings,
    bn_matched_images,
    starting_images,
)

METHODS = ("adaptors", "mimic", "none")


@dataclass(frozen=True)
class RecoverySettings:
    method: str = "adaptors"
    fit: FitSettings = field(default_factory=lambda: FitSettings(steps=200, batch_size=16, lr=0.005))
    batchnorm: str = "frozen"  # "frozen" (eval statistics) or "train" (batch statistics, the paper's)
    eval_every: int = 20
    logit_weight: float = 0.0  # weight of logit MSE beside the final features
    point_weight: float = 0.0  # weight of mimicking each dropped block's output (multi-point)
    mixing: str = "none"  # "cutmix" or "mixup": half of each batch mixes two views
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)  # BatchNorm-matched inputs (off: 0 images)
    views: ViewSettings = field(default_factory=ViewSettings)  # which tiny-set views to mimic on (random or confident)
    # weights of the recovered change that the run also offers for deployment (blended_state); the report
    # images choose among the unrecovered network, these blends and the recovered one. Off by default: on
    # the benchmark the extra choice did not raise agreement on the images that did not choose
    blends: tuple[float, ...] = ()

    def __post_init__(self):
        if self.method not in METHODS:
            raise UsageError(f"unknown recovery method '{self.method}'; choose one of: {', '.join(METHODS)}.")
        if self.mixing not in MIXING:
            raise UsageError(f"unknown mixing '{self.mixing}'; choose one of: {', '.join(MIXING)}.")
        if self.batchnorm not in ("frozen", "train"):
            raise UsageError(f"batchnorm must be 'frozen' or 'train', not '{self.batchnorm}'.")
        if any(not 0.0 < w < 1.0 for w in self.blends):
            raise UsageError(f"blend weights must lie strictly between 0 and 1, not {list(self.blends)}.")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["fit"] = self.fit.to_dict()
        data["synthetic"] = asdict(self.synthetic)
        data["views"] = asdict(self.views)
        return data

    @property
    def objective(self) -> Objective:
        return Objective(logit_weight=self.logit_weight, point_weight=self.point_weight)


@dataclass
class RecoveryResult:
    state_dict: dict
    kept: str  # "recovered" | "unrecovered"
    best_step: int | None
    selection_kl_before: float
    selection_kl_after: float
    losses: list[float]
    checks: list[dict]  # held-out checks during training
    stopped: str | None = None  # why a scheduled recovery stopped before its step cap (patience, time)
    lr_search: dict | None = None  # the learning-rate range test: lrs, losses, the lr chosen

    def summary(self) -> dict:
        out: dict[str, object] = {
            "kept": self.kept,
            "best_step": self.best_step,
            "selection_kl_before": self.selection_kl_before,
            "selection_kl_after": self.selection_kl_after,
            "checks": self.checks,
        }
        if self.stopped is not None or self.lr_search is not None:
            out.update(stopped=self.stopped, lr_search=self.lr_search)
        return out


def blended_state(unrecovered: dict, recovered: dict, weight: float) -> dict:
    """unrecovered + weight x (recovered - unrecovered), per floating-point tensor (integer buffers: recovered's).

    Weight-space ensembling (WiSE-FT, Wortsman et al. 2022). On EfficientNet-Lite0 with out-of-domain tiny
    sets the halfway network lost about a point less held-out agreement than the recovered one, on average
    level with the unrecovered network (benchmarks/results/lite0_blend.md).
    Folded adaptors are linear in the adaptor weights, so blending the folded state equals folding blended
    adaptors: the blend is the same kind of network, with no extra layer.
    """
    return {k: (v + weight * (recovered[k] - v)) if v.is_floating_point() else recovered[k]
            for k, v in unrecovered.items()}


def set_batchnorm_mode(student: nn.Module, mode: str) -> None:
    """Training mode, with BatchNorm kept on its running statistics when `mode` is "frozen"."""
    student.train()
    if mode == "frozen":
        for m in student.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


class _Checkpoints:
    """Atomic save/load of the recovery state so an interrupted run continues where it stopped."""

    def __init__(self, path: Path | None):
        self.path = path

    def load(self) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)  # plain containers: runs no code

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        save_torch_atomic(self.path, state)


@dataclass
class _Progress:
    """Where a recovery stands (all of it checkpointed): losses so far, held-out checks, the best state."""

    start: int
    losses: list[float]
    checks: list[dict]
    best: dict  # kl, step (None: the unrecovered network), state
    optimizer_state: dict | None = None
    lr: float | None = None  # the learning rate a scheduled recovery started from (its range test's choice)
    lr_search: dict | None = None


def recover(teacher: nn.Module, student: nn.Module, dropped: list[str], structure: NetworkStructure,
            train_set: TinySet, selection_images: torch.Tensor, prep: Preprocessing, settings: RecoverySettings,
            seed: int = 0, checkpoint_path: Path | None = None, checkpoint_every: int = 20,
            progress: ProgressFactory = silent, log: Log = quiet_log, schedule: Schedule | None = None) -> RecoveryResult:
    """Recover `student` (the teacher with `dropped` replaced by identities); returns the state to keep.

    With `schedule`, the lr comes from a range test and training stops on patience or the deadline; a
    diverging loss raises schedule.Diverged (the adaptors are detached first).
    """
    teacher.eval()
    teacher_sel = predict_logits(teacher, selection_images)
    student.eval()
    kl_before = prediction_kl(predict_logits(student, selection_images), teacher_sel)
    unrecovered = cpu_state(student.state_dict())
    if settings.method == "none" or settings.fit.steps == 0:
        return RecoveryResult(unrecovered, "unrecovered", None, kl_before, kl_before, [], [])
    adaptors, params = _trainable(teacher, student, structure, dropped, settings.method)
    checkpoints = _Checkpoints(checkpoint_path)
    state = _resume(checkpoints, adaptors or student, kl_before, unrecovered, settings.fit.steps, log)
    synthetic = _synthetic_pool(teacher, train_set, prep, settings, seed, checkpoint_path, progress, log)
    views = _view_pool(teacher, train_set, prep, settings, seed, progress, log)
    stopped = None
    try:
        if schedule is not None and schedule.settings.range_steps and state.lr is None:
            state.lr, state.lr_search = _range_test(teacher, student, adaptors, structure, dropped, train_set, prep,
                                                    settings, seed, params, synthetic, views, schedule, progress)
            log(f"learning-rate range test: lr {state.lr:.3g}")
        if state.lr is not None:
            settings = replace(settings, fit=replace(settings.fit, lr=state.lr, lr_milestones=()))
        on_step = _StepHook(student, adaptors, selection_images, teacher_sel, settings, checkpoints, checkpoint_every,
                            state, schedule, kl_before)
        _mimic(teacher, student, structure, dropped, train_set, prep, settings, seed, params, on_step, synthetic,
               views, progress, settings.fit, state.start, state.optimizer_state)
    except StopTraining as stop:
        stopped = stop.reason
    finally:
        student.eval()
        if adaptors is not None:
            adaptors.detach()
    best = state.best
    kept = "recovered" if best["step"] is not None else "unrecovered"
    return RecoveryResult(best["state"], kept, best["step"], kl_before, best["kl"], state.losses, state.checks,
                          stopped, state.lr_search)


def _range_test(teacher, student, adaptors, structure, dropped, train_set, prep, settings, seed, params, synthetic,
                views, schedule: Schedule, progress) -> tuple[float, dict]:
    """The learning rate to train at, from a short range test on a copy of the trainable state (restored after)."""
    saved_student = copy.deepcopy(student.state_dict())
    saved_adaptors = copy.deepcopy(adaptors.state_dict()) if adaptors is not None else None
    test = RangeTest(schedule.settings)
    fit_settings = replace(settings.fit, steps=schedule.settings.range_steps, lr=schedule.settings.range_lr_min,
                           lr_milestones=())
    try:
        _mimic(teacher, student, structure, dropped, train_set, prep, settings, seed + 104_729, params, test,
               synthetic, views, progress, fit_settings, same_batch=True)
    except StopTraining:
        pass
    finally:
        student.load_state_dict(saved_student)
        if adaptors is not None:
            adaptors.load_state_dict(saved_adaptors)
    lr = test.chosen_lr()
    return lr, test.to_dict() | {"chosen_lr": lr}


def _trainable(teacher: nn.Module, student: nn.Module, structure: NetworkStructure, dropped: list[str],
               method: str) -> tuple[Adaptors | None, list[nn.Parameter]]:
    """The adaptors attached around the dropped blocks (method "adaptors"), and the parameters to train."""
    if method != "adaptors":
        return None, [p for p in student.parameters() if p.requires_grad]
    sites = adaptor_sites(teacher, structure, dropped)
    if not sites:
        raise UsageError("no foldable adaptor sites around the dropped blocks; use --recovery mimic.")
    adaptors = Adaptors(sites).to(device_of(student)).attach(student)
    for p in student.parameters():
        p.requires_grad_(False)
    return adaptors, list(adaptors.parameters())


def _folded_state(student: nn.Module, adaptors: Adaptors | None) -> dict:
    """The student's state as a plain network: adaptors, if any, folded into a hook-free copy."""
    if adaptors is None:
        return cpu_state(student.state_dict())
    folded = copy.deepcopy(student)  # deepcopy keeps the hooks; folding needs a hook-free copy
    for module in folded.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    Adaptors(list(adaptors.sites.values())).to(device_of(student)).load_state_from(adaptors).fold_into(folded)
    return cpu_state(folded.state_dict())


def _resume(checkpoints: _Checkpoints, trainable: nn.Module, kl_before: float, unrecovered: dict, steps: int,
            log: Log) -> _Progress:
    """A fresh start, or the checkpointed progress with its weights loaded into `trainable`."""
    saved = checkpoints.load()
    if saved is None:
        return _Progress(0, [], [], {"kl": kl_before, "step": None, "state": unrecovered})
    trainable.load_state_dict(saved["trainable"])
    state = _Progress(saved["step"] + 1, saved["losses"], saved["checks"], saved["best"], saved["optimizer"],
                      saved.get("lr"), saved.get("lr_search"))
    log(f"resuming recovery from its checkpoint at step {state.start} of {steps}")
    return state


class _StepHook:
    """After each training step: a held-out check every `eval_every` steps, keeping the best state, and a
    checkpoint every `checkpoint_every` steps (and after the last)."""

    def __init__(self, student: nn.Module, adaptors: Adaptors | None, selection_images: torch.Tensor,
                 teacher_logits: torch.Tensor, settings: RecoverySettings, checkpoints: _Checkpoints,
                 checkpoint_every: int, state: _Progress, schedule: Schedule | None = None, kl_before: float = 0.0):
        self.student, self.adaptors = student, adaptors
        self.selection_images, self.teacher_logits = selection_images, teacher_logits
        self.settings, self.checkpoints, self.checkpoint_every = settings, checkpoints, checkpoint_every
        self.state, self.schedule, self.kl_before = state, schedule, kl_before

    def __call__(self, step: int, loss: float, optimizer, scheduler) -> None:
        self.state.losses.append(loss)
        if self.schedule is not None:
            self.schedule.check_loss(step, loss)
        done, last = step + 1, self.settings.fit.steps
        if done % self.settings.eval_every == 0 or done == last:
            self._check(done, loss, optimizer)
        if done % self.checkpoint_every == 0 or done == last:
            trainable = self.adaptors or self.student
            self.checkpoints.save({
                "step": step, "trainable": trainable.state_dict(), "losses": self.state.losses,
                "checks": self.state.checks, "best": self.state.best,
                "optimizer": {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                "lr": self.state.lr, "lr_search": self.state.lr_search,
            })
        if self.schedule is not None:
            self.schedule.check_deadline(step)

    def _check(self, done: int, loss: float, optimizer=None) -> None:
        self.student.eval()
        kl = prediction_kl(predict_logits(self.student, self.selection_images), self.teacher_logits)
        self.state.checks.append({"step": done, "selection_kl": kl, "train_loss": loss})
        if kl < self.state.best["kl"]:
            self.state.best.update(kl=kl, step=done, state=_folded_state(self.student, self.adaptors))
        set_batchnorm_mode(self.student, self.settings.batchnorm)
        if self.schedule is not None and optimizer is not None:
            self.schedule.after_check([c["selection_kl"] for c in self.state.checks], self.kl_before, optimizer,
                                      self.state.lr if self.state.lr is not None else self.settings.fit.lr)


def _view_pool(teacher: nn.Module, train_set: TinySet, prep: Preprocessing, settings: RecoverySettings, seed: int,
               progress: ProgressFactory, log: Log):
    """The tiny-set views recovery mimics on when they are the confident ones (None: fresh random views)."""
    if settings.views.source != "confident":
        return None
    log(f"keeping the {settings.views.keep} of {settings.views.pool} random tiny-set views "
        "the original is surest about")
    return confident_views(teacher, train_set, prep, settings.views, settings.fit.min_crop_scale, seed, progress)


def _mimic(teacher: nn.Module, student: nn.Module, structure: NetworkStructure, dropped: list[str],
           train_set: TinySet, prep: Preprocessing, settings: RecoverySettings, seed: int,
           params: list[nn.Parameter], on_step, synthetic: torch.Tensor | None,
           views, progress: ProgressFactory, fit_settings: FitSettings, start: int = 0,
           optimizer_state: dict | None = None, same_batch: bool = False) -> None:
    """Train `params` so the student's features (and dropped blocks' outputs, if asked) mimic the teacher's."""
    points = dropped if settings.point_weight else []
    with FeatureTap(teacher, structure.feature_point) as teacher_tap, \
            FeatureTap(student, structure.feature_point) as tap, \
            OutputTaps(teacher, points) as teacher_points, OutputTaps(student, points) as student_points:
        source: BatchSource = LiveBatches(train_set, prep, teacher_tap, settings.fit.batch_size,
                                          settings.fit.min_crop_scale, seed, settings.mixing, teacher_points,
                                          synthetic, views)
        if same_batch:  # the range test: one batch throughout, so the loss moves with the lr, not the views
            source = _OneBatch(source.batch(0))
        set_batchnorm_mode(student, settings.batchnorm)
        fit(tap, source, params, fit_settings, progress, "recovery (feature mimicking)", start_step=start,
            optimizer_state=optimizer_state, on_step=on_step, objective=settings.objective,
            student_points=student_points)


class _OneBatch:
    """A batch source that serves the same batch at every step."""

    def __init__(self, batch):
        self._batch = batch

    def batch(self, step: int):
        return self._batch


def _synthetic_pool(teacher: nn.Module, train_set: TinySet, prep: Preprocessing, settings: RecoverySettings,
                    seed: int, checkpoint_path: Path | None, progress: ProgressFactory, log: Log) -> torch.Tensor | None:
    """The BatchNorm-matched images recovery mixes in (None when off), made once and kept beside the checkpoint."""
    wanted = settings.synthetic
    if wanted.images == 0:
        return None
    saved = checkpoint_path.with_name("synthetic_images.pt") if checkpoint_path is not None else None
    if saved is not None and saved.exists():
        return torch.load(saved, map_location="cpu", weights_only=True)
    log(f"synthesising {wanted.images} BatchNorm-matched images from {wanted.init} ({wanted.steps} steps each)")
    views = augmented_views(train_set, prep, wanted.images, settings.fit.min_crop_scale, seed + 7919)
    images = bn_matched_images(teacher, starting_images(views, wanted, seed), wanted, seed, progress)
    if saved is not None:
        save_torch_atomic(saved, images)
    return images
