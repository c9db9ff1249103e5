"""How long and how fast a recovery trains, decided by measurement rather than a fixed step count.

- Learning rate: a short range test (Smith 2017, "Cyclical learning rates"): the learning rate grows
  geometrically over a few steps on a copy of the weights, and the run takes a tenth of the rate at which the
  loss was lowest (the steepest-but-safe region; larger rates are where the loss turns up).
- Length: the held-out selection split is checked every `eval_every` steps; after `patience` checks without
  a relative improvement of `min_delta`, the learning rate is divided by 10 (`lr_drops` times), then the
  recovery stops. A step cap and a deadline (the recipe's share of `--recovery-time`) stop it too.
- Divergence: a loss that is not finite, or grows past `diverge_factor` times its first value, ends the
  recipe with the reason; the caller drops it.

The stopping decision is a pure function of the checks recorded so far, so a resumed recovery (whose
checks come back from its checkpoint) continues with the same patience count.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass


class StopTraining(Exception):
    """Raised from the step hook to end the fit loop early; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Diverged(Exception):
    """The recipe's loss blew up; `reason` names the step and the value."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ScheduleSettings:
    # held-out checks without improvement before the lr drops (or training stops). 10, not 5: on the inverted-residual
    # Fashion-MNIST teacher (100 images, 3 seeds) patience 5 stopped every-parameter recovery at 400-560 steps while
    # the selection KL still had half its way to go; 10 ran 980-1360 steps, 0.64 points closer to the teacher
    # (benchmarks/results/recovery_recipes_notes.md)
    patience: int = 10
    min_delta: float = 0.01  # relative improvement of the selection KL that counts
    lr_drops: int = 1  # times the lr is divided by 10 on a plateau before stopping
    max_steps: int = 3000  # a cap: the recipe's FitSettings.steps
    diverge_factor: float = 10.0  # loss above this multiple of its first value = diverged
    range_steps: int = 24  # learning-rate range test length
    range_lr_min: float = 1e-4
    range_lr_max: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PatienceDecision:
    stop: bool
    drops_done: int  # lr drops so far (the lr in force is the start lr x 0.1 ** drops_done)
    since_best: int  # checks since the last improvement


def patience_decision(kls: list[float], start_kl: float, settings: ScheduleSettings) -> PatienceDecision:
    """Replay the checks' selection KLs: when did patience run out, how many lr drops, stop now or not."""
    best, since, drops = start_kl, 0, 0
    for kl in kls:
        if kl < best * (1.0 - settings.min_delta):
            best, since = kl, 0
            continue
        since += 1
        if since >= settings.patience:
            if drops >= settings.lr_drops:
                return PatienceDecision(True, drops, since)
            drops, since = drops + 1, 0
    return PatienceDecision(False, drops, since)


def divergence(step: int, loss: float, first_loss: float | None, factor: float) -> str | None:
    """The reason the loss counts as diverged at `step`, or None."""
    if not math.isfinite(loss):
        return f"the loss was {loss} at step {step + 1}"
    if first_loss is not None and first_loss > 0 and loss > factor * first_loss:
        return f"the loss reached {loss:.4g} at step {step + 1}, over {factor:g}x its first value {first_loss:.4g}"
    return None


class Schedule:
    """The stopping rule and divergence check a recovery's step hook consults."""

    def __init__(self, settings: ScheduleSettings, deadline: float | None = None, clock=time.monotonic):
        self.settings, self.deadline, self.clock = settings, deadline, clock
        self.first_loss: float | None = None

    def check_loss(self, step: int, loss: float) -> None:
        """Raise Diverged when the loss blew up."""
        reason = divergence(step, loss, self.first_loss, self.settings.diverge_factor)
        if reason is not None:
            raise Diverged(reason)
        if self.first_loss is None:
            self.first_loss = loss

    def check_deadline(self, step: int) -> None:
        """Raise StopTraining when the deadline passed (after the step's check and checkpoint)."""
        if self.deadline is not None and self.clock() >= self.deadline:
            raise StopTraining(f"time: its share of the recovery time ran out after {step + 1} steps")

    def after_check(self, kls: list[float], start_kl: float, optimizer, base_lr: float) -> None:
        """Set the optimizer's lr for the drops earned so far; raise StopTraining when patience ran out."""
        decision = patience_decision(kls, start_kl, self.settings)
        if decision.stop:
            raise StopTraining(f"patience: {self.settings.patience} checks without a "
                               f"{100 * self.settings.min_delta:g}% better selection KL, "
                               f"after {decision.drops_done} lr drop(s)")
        for group in optimizer.param_groups:
            group["lr"] = base_lr * 0.1 ** decision.drops_done


class RangeTest:
    """Step hook of the learning-rate range test: the lr grows geometrically; the test ends when the loss blows up."""

    def __init__(self, settings: ScheduleSettings):
        self.settings = settings
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def lr_at(self, step: int) -> float:
        s = self.settings
        return s.range_lr_min * (s.range_lr_max / s.range_lr_min) ** (step / max(1, s.range_steps - 1))

    def __call__(self, step: int, loss: float, optimizer, scheduler) -> None:
        self.lrs.append(self.lr_at(step))
        self.losses.append(loss)
        finite = [x for x in self.losses if math.isfinite(x)]
        if not math.isfinite(loss) or (finite and loss > 4 * min(finite)):
            raise StopTraining("range test: the loss turned up")
        for group in optimizer.param_groups:
            group["lr"] = self.lr_at(step + 1)

    def chosen_lr(self) -> float:
        """A tenth of the lr at the lowest (3-step smoothed) loss; Diverged when no loss was finite."""
        return choose_lr(self.lrs, self.losses)

    def to_dict(self) -> dict:
        return {"lrs": self.lrs, "losses": self.losses}


def choose_lr(lrs: list[float], losses: list[float]) -> float:
    """A tenth of the learning rate where the smoothed loss was lowest (the range test's rule)."""
    finite = [(lr, x) for lr, x in zip(lrs, losses) if math.isfinite(x)]
    if not finite:
        raise Diverged("the learning-rate range test found no step with a finite loss")
    values = [x for _, x in finite]
    smooth = [sum(values[max(0, i - 1): i + 2]) / len(values[max(0, i - 1): i + 2]) for i in range(len(values))]
    best = min(range(len(smooth)), key=smooth.__getitem__)
    return finite[best][0] / 10
