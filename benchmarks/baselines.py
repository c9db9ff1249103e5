"""Baseline recoveries of a pruned network, for comparison with feature mimicking (pipeline.recovery.recover).

- `finetune_labels` ("BP" in PRACTISE): cross-entropy on the tiny set's labels.
- `distill_logits`: KL divergence from the teacher's softened predictions, no labels.

Both train every parameter with `pipeline.recovery.mimic`'s optimizer and schedule (SGD with momentum, lr
divided by 10 at the milestones), on the same augmented views, with the same BatchNorm mode and the
same checkpoint choice as `recover`: every `eval_every` steps the student is checked on the selection
split by the KL of its predictions from the teacher's, and the best state (or the unrecovered one if
none beats it) is kept. They return `pipeline.recovery.recover.RecoveryResult`.
"""

from __future__ import annotations

import copy
import random
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import Preprocessing, TinySet
from pipeline.network.evaluation import predict_logits
from pipeline.recovery.mimic import make_optimizer
from pipeline.recovery.recover import (
    RecoveryResult,
    RecoverySettings,
    prediction_kl,
    set_batchnorm_mode,
)


def _labelled_batch(tiny: TinySet, transform, batch_size: int, seed: int, step: int):
    rng = random.Random(seed * 1_000_003 + step)
    torch.manual_seed(seed * 1_000_003 + step)
    idx = [rng.randrange(len(tiny)) for _ in range(batch_size)]
    images = torch.stack([transform(tiny.images[i]) for i in idx])
    labels = torch.tensor([tiny.labels[i] for i in idx]) if tiny.labels is not None else None
    return images, labels


def _train(teacher: nn.Module, student: nn.Module, train_set: TinySet, selection_images: torch.Tensor,
           prep: Preprocessing, settings: RecoverySettings, seed: int,
           loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]) -> RecoveryResult:
    """The shared loop: `loss_fn(student_logits, images, labels)` on augmented views of the tiny set."""
    teacher.eval()
    teacher_sel = predict_logits(teacher, selection_images)
    kl_before = prediction_kl(predict_logits(student, selection_images), teacher_sel)
    unrecovered = copy.deepcopy(student.state_dict())
    best = {"kl": kl_before, "step": None, "state": unrecovered}
    fit = settings.fit
    if fit.steps == 0:
        return RecoveryResult(unrecovered, "unrecovered", None, kl_before, kl_before, [], [])
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimizer(params, fit)
    transform = prep.train_transform(fit.min_crop_scale)
    losses, checks = [], []
    set_batchnorm_mode(student, settings.batchnorm)
    for step in range(fit.steps):
        images, labels = _labelled_batch(train_set, transform, fit.batch_size, seed, step)
        loss = loss_fn(student(images), images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if done % settings.eval_every == 0 or done == fit.steps:
            kl = prediction_kl(predict_logits(student, selection_images), teacher_sel)
            checks.append({"step": done, "selection_kl": kl, "train_loss": losses[-1]})
            if kl < best["kl"]:
                best.update(kl=kl, step=done, state=copy.deepcopy(student.state_dict()))
            set_batchnorm_mode(student, settings.batchnorm)
    student.eval()
    kept = "recovered" if best["step"] is not None else "unrecovered"
    return RecoveryResult(best["state"], kept, best["step"], kl_before, best["kl"], losses, checks)


def finetune_labels(teacher: nn.Module, student: nn.Module, train_set: TinySet, selection_images: torch.Tensor,
                    prep: Preprocessing, settings: RecoverySettings, seed: int = 0) -> RecoveryResult:
    """BP baseline: cross-entropy of the student on the tiny set's labels (the teacher only judges checkpoints)."""
    if train_set.labels is None:
        raise UsageError("finetuning on labels needs a labelled tiny set.")
    return _train(teacher, student, train_set, selection_images, prep, settings, seed,
                  lambda logits, images, labels: F.cross_entropy(logits, labels))


def distill_logits(teacher: nn.Module, student: nn.Module, train_set: TinySet, selection_images: torch.Tensor,
                   prep: Preprocessing, settings: RecoverySettings, seed: int = 0,
                   temperature: float = 4.0) -> RecoveryResult:
    """Logit distillation: KL(teacher || student) of predictions softened by `temperature`, times T^2; no labels."""
    def loss(logits, images, labels):
        with torch.no_grad():
            target = teacher(images)
        return F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(target / temperature, 1),
                        log_target=True, reduction="batchmean") * temperature ** 2

    return _train(teacher, student, train_set, selection_images, prep, settings, seed, loss)
