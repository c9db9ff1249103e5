"""Accuracy and agreement: how a compressed network compares with the original on images it never trained on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.network.compute import to_model_device


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Logits of `model` in eval mode, in batches, on the CPU whatever the model's device: (N, classes)."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(to_model_device(model, images[i : i + batch_size])).cpu()
                     for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


@dataclass
class Agreement:
    """Comparison of a student's predictions with the teacher's (and with labels when there are some)."""

    images: int
    top1_agreement: float  # fraction of images where both predict the same class
    top5_agreement: float  # fraction where the teacher's top-1 is in the student's top-5
    logit_mse: float
    student_top1: float | None = None
    student_top5: float | None = None
    teacher_top1: float | None = None
    teacher_top5: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Agreement":
        return cls(**data)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return float(hits.float().mean())


def compare(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: list[int] | None) -> Agreement:
    teacher_top1 = teacher_logits.argmax(1)
    result = Agreement(
        images=len(teacher_logits),
        top1_agreement=float((student_logits.argmax(1) == teacher_top1).float().mean()),
        top5_agreement=topk_accuracy(student_logits, teacher_top1, 5),
        logit_mse=float(((student_logits - teacher_logits) ** 2).mean()),
    )
    if labels is not None:
        target = torch.tensor(labels)
        if int(target.max()) < student_logits.shape[1]:
            result.student_top1 = topk_accuracy(student_logits, target, 1)
            result.student_top5 = topk_accuracy(student_logits, target, 5)
            result.teacher_top1 = topk_accuracy(teacher_logits, target, 1)
            result.teacher_top5 = topk_accuracy(teacher_logits, target, 5)
    return result


def paired_change(before_logits: torch.Tensor, after_logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict:
    """Images whose top-1 agreement with the teacher recovery gained or lost, and an exact sign test.

    On a few dozen report images one image is several points; the p-value (two-sided, McNemar's exact
    test on the images that changed) says whether a change could be chance.
    """
    teacher = teacher_logits.argmax(1)
    before, after = before_logits.argmax(1) == teacher, after_logits.argmax(1) == teacher
    gained, lost = int((after & ~before).sum()), int((before & ~after).sum())
    changed = gained + lost
    tail = sum(math.comb(changed, k) for k in range(min(gained, lost) + 1)) / 2 ** changed if changed else 1.0
    return {"images": int(len(teacher)), "gained": gained, "lost": lost, "p_value": min(1.0, 2 * tail)}


def prediction_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean KL(teacher || student) of the softmax predictions: 0 when they predict identically."""
    return float(F.kl_div(F.log_softmax(student_logits, 1), F.log_softmax(teacher_logits, 1),
                          log_target=True, reduction="batchmean"))
