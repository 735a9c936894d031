"""Pixel metrics of the change class and threshold choice. Numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Counts:
    """Confusion counts of the change class (pooled by adding counts)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 0.0

    @property
    def iou(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "iou": round(self.iou, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def count_change(pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> Counts:
    """Counts for boolean prediction vs label (1 = change) over valid pixels."""
    pred = pred.astype(bool)
    label = label.astype(bool)
    if valid is not None:
        pred, label = pred[valid], label[valid]
    return Counts(
        tp=int(np.sum(pred & label)),
        fp=int(np.sum(pred & ~label)),
        fn=int(np.sum(~pred & label)),
        tn=int(np.sum(~pred & ~label)),
    )


# Candidate decision thresholds on p(change), the same grid for every selection scheme.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def counts_at_thresholds(
    prob: np.ndarray, label: np.ndarray, grid: tuple[float, ...] = THRESHOLD_GRID
) -> list[Counts]:
    """Counts of ``prob >= t`` for every t of ``grid`` (a precision/recall curve), 1-D inputs."""
    label = label.astype(bool)
    pos = np.sort(prob[label])
    neg = np.sort(prob[~label])
    t = np.asarray(grid, dtype=prob.dtype)
    # number of values >= t = size - number of values < t
    tp = pos.size - np.searchsorted(pos, t, side="left")
    fp = neg.size - np.searchsorted(neg, t, side="left")
    return [
        Counts(int(a), int(b), int(pos.size - a), int(neg.size - b))
        for a, b in zip(tp, fp, strict=True)
    ]


def sum_curves(curves: list[list[Counts]]) -> list[Counts]:
    """Pool several curves on the same grid (pixels of several cities)."""
    total = [Counts() for _ in curves[0]] if curves else []
    for curve in curves:
        total = [a + b for a, b in zip(total, curve, strict=True)]
    return total


def best_on_curve(curve: list[Counts]) -> int:
    """Index of the F1-maximising threshold of a pooled curve (lowest index on ties)."""
    if not curve:
        raise ValueError("no predictions to choose a threshold from (empty curve)")
    return int(np.argmax([c.f1 for c in curve]))


def best_threshold(prob: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """Threshold in 0.05..0.95 maximising F1 of ``prob >= t``; returns (t, F1)."""
    best = (0.5, -1.0)
    for t in np.arange(0.05, 0.951, 0.05):
        f1 = count_change(prob >= t, label).f1
        if f1 > best[1]:
            best = (round(float(t), 2), f1)
    return best
