"""A latency model that learns how block savings interact, fitted on measured multi-block drops.

A table's single-block savings predict a multi-block drop by adding up. That is close on onnxruntime CPU
and eager CUDA, but with CUDA graphs on an H100 every multi-block drop ran 10-35% faster than the sum
predicted. `pipeline profile --validate K` measures random multi-block drops; this module fits, on those, a
correction to the additive prediction (all quantities are fractions of the full network's latency):

    saving(S) = sum of single savings of S + extra * (|S| - 1) + sum over neighbour pairs in S of pair[a+b]

`extra` is a saving shared by every block beyond the first; `pair` terms belong to neighbouring candidate
blocks (consecutive in the table) dropped together. Ridge regularisation pulls each term to zero, the pair
terms harder (there are many of them and few drops). A single-block drop is predicted exactly as measured.
The fit is judged by leave-one-drop-out error on the measured drops (repeated drops of the same blocks are
held out together) beside the additive model's error on the same drops; the table carries the learned
model only when it predicted the held-out drops better, and otherwise records why it stays additive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ADDITIVE = "additive"
INTERACTIONS = "interactions"
EXTRA_RIDGE = 1e-3  # ridge weight on the shared per-extra-block term (fractions of the full latency)
PAIR_RIDGE = 1.0  # ridge weight on each neighbour-pair term: a pair needs several drops to earn a value
MIN_DISTINCT_DROPS = 3  # fewer distinct drops leave nothing to hold out


@dataclass(frozen=True)
class LatencyModel:
    """What a table predicts with, and the held-out evidence for it (`kind` "additive" needs no terms)."""

    kind: str = ADDITIVE
    extra_fraction: float = 0.0  # saving per dropped block beyond the first
    pair_fractions: dict[str, float] = field(default_factory=dict)  # "a+b" -> extra saving with both dropped
    evaluation: dict = field(default_factory=dict)  # held-out errors of both models, drops, why this kind

    def interaction_fraction(self, dropped) -> float:
        """The saving beyond the summed single-block savings, as a fraction of the full latency."""
        if self.kind == ADDITIVE or len(dropped) < 2:
            return 0.0
        chosen = set(dropped)
        pairs = sum(value for name, value in self.pair_fractions.items() if set(name.split("+")) <= chosen)
        return self.extra_fraction * (len(chosen) - 1) + pairs

    def describe(self) -> str:
        held_out = self.evaluation.get("held_out", {})
        if not held_out:
            return f"{self.kind} (not fitted: {self.evaluation.get('reason', 'no multi-block drops measured')})"
        add, fit = held_out[ADDITIVE], held_out[INTERACTIONS]
        return (f"{self.kind}: held-out median |error| additive {100 * add['median_abs_relative_error']:.1f}%, "
                f"interactions {100 * fit['median_abs_relative_error']:.1f}% "
                f"({self.evaluation['distinct_drops']} distinct drops, {self.evaluation['method']})")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "extra_fraction": self.extra_fraction, "pair_fractions": dict(self.pair_fractions),
                "evaluation": self.evaluation}

    @classmethod
    def from_dict(cls, data: dict | None) -> "LatencyModel":
        if not data:
            return cls()
        if data["kind"] not in (ADDITIVE, INTERACTIONS):
            raise ValueError(f"unknown latency model kind {data['kind']!r}")
        return cls(data["kind"], float(data.get("extra_fraction", 0.0)),
                   {str(k): float(v) for k, v in data.get("pair_fractions", {}).items()}, data.get("evaluation", {}))


@dataclass(frozen=True)
class Drop:
    """A multi-block drop measured end to end: its blocks and its latency as a fraction of the full network."""

    dropped: tuple[str, ...]
    measured_ratio: float


def neighbour_pairs(blocks: list[str]) -> list[str]:
    """Consecutive candidate blocks in network order, named "a+b"."""
    return [f"{a}+{b}" for a, b in zip(blocks, blocks[1:])]


def _features(dropped, pairs: list[str]) -> np.ndarray:
    chosen = set(dropped)
    return np.array([len(chosen) - 1] + [float(set(p.split("+")) <= chosen) for p in pairs])


def _residual(drop: Drop, fractions: dict[str, float]) -> float:
    """Measured saving minus the additive prediction (fractions of the full latency)."""
    return (1.0 - drop.measured_ratio) - sum(fractions[b] for b in drop.dropped)


def _fit_terms(drops: list[Drop], fractions: dict[str, float], pairs: list[str],
               pair_ridge: float = PAIR_RIDGE) -> np.ndarray:
    x = np.array([_features(d.dropped, pairs) for d in drops])  # (drops, 1 + pairs)
    y = np.array([_residual(d, fractions) for d in drops])
    ridge = np.diag([EXTRA_RIDGE] + [pair_ridge] * len(pairs))
    return np.linalg.solve(x.T @ x + ridge, x.T @ y)


def _model(terms: np.ndarray, pairs: list[str], evaluation: dict | None = None) -> LatencyModel:
    return LatencyModel(INTERACTIONS, float(terms[0]), {p: float(v) for p, v in zip(pairs, terms[1:])},
                        evaluation or {})


def predicted_ratio(fractions: dict[str, float], model: LatencyModel, dropped) -> float:
    """Latency left after dropping `dropped`, as a fraction of the full network, under `model`."""
    return 1.0 - sum(fractions[b] for b in dropped) - model.interaction_fraction(dropped)


def _errors_summary(errors: list[float]) -> dict:
    absolute = np.abs(errors)
    return {"median_abs_relative_error": float(np.median(absolute)), "worst_abs_relative_error": float(absolute.max()),
            "relative_errors": [float(e) for e in errors]}


def held_out_errors(drops: list[Drop], fractions: dict[str, float],
                    pair_ridge: float = PAIR_RIDGE) -> tuple[list[float], list[float]]:
    """Relative errors (predicted - measured) / measured of the additive and the fitted model on each drop,
    the fitted one each time fitted without any drop of the same blocks (`pair_ridge`: for sensitivity)."""
    pairs = neighbour_pairs(list(fractions))
    additive: list[float] = []
    fitted: list[float] = []
    for drop in drops:
        training = [d for d in drops if set(d.dropped) != set(drop.dropped)]
        model = _model(_fit_terms(training, fractions, pairs, pair_ridge), pairs)
        for errors, used in ((additive, LatencyModel()), (fitted, model)):
            predicted = predicted_ratio(fractions, used, drop.dropped)
            errors.append((predicted - drop.measured_ratio) / drop.measured_ratio)
    return additive, fitted


def fit_latency_model(fractions: dict[str, float], drops: list[Drop]) -> LatencyModel:
    """The interaction model fitted on all `drops` when it predicted held-out drops better, else additive.

    `fractions`: each candidate block's single-block saving over the full latency, in network order.
    Either way the returned model records both models' held-out errors and the reason for its kind.
    """
    multi = [d for d in drops if len(set(d.dropped)) >= 2]
    distinct = len({frozenset(d.dropped) for d in multi})
    evaluation: dict = {"drops": len(multi), "distinct_drops": distinct, "method": "leave-one-drop-out",
                        "extra_ridge": EXTRA_RIDGE, "pair_ridge": PAIR_RIDGE}
    if distinct < MIN_DISTINCT_DROPS:
        return LatencyModel(ADDITIVE, evaluation=evaluation | {
            "reason": f"{distinct} distinct multi-block drops measured; at least {MIN_DISTINCT_DROPS} are needed "
                      "to hold some out (profile with --validate 10 or more)"})
    additive, fitted = held_out_errors(multi, fractions)
    evaluation["held_out"] = {ADDITIVE: _errors_summary(additive), INTERACTIONS: _errors_summary(fitted)}
    better = float(np.median(np.abs(fitted))) < float(np.median(np.abs(additive)))
    evaluation["reason"] = ("the interaction model predicted held-out drops better" if better
                            else "the additive model predicted held-out drops as well or better")
    if not better:
        return LatencyModel(ADDITIVE, evaluation=evaluation)
    pairs = neighbour_pairs(list(fractions))
    return _model(_fit_terms(multi, fractions, pairs), pairs, evaluation)
