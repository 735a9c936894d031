"""Calibrating the change state on data with truth: the LLR mapping and the thresholds.

Pure numpy. The runner that reads archives and replays them is ``models/calibrate_state.py``.

LLR mapping
    For a modality m, the state turns a model output p into evidence with
    ``LLR_m(p) = slope * logit(p) + offset`` (then clipped and weighted). This is logistic
    calibration (Platt scaling) on ``logit(p)``, fitted with *class-balanced* weights so the
    fitted log-odds are the log-likelihood ratio log f(p | change) / f(p | no change) and
    not a posterior that depends on how rare change was in the calibration data.

Samples
    :func:`sample_labels` draws, from one observation, pixels that have a usable p with
    their truth: positive when the truth change date lies in ``(obs_day - horizon, obs_day]``
    (the change has happened and is recent enough that detecting it is the job), negative
    when the pixel has no change up to the observation day. Older changes are left out.
"""

from __future__ import annotations

import numpy as np

_P_EPS = 1e-4


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _P_EPS, 1 - _P_EPS)
    return np.log(q / (1 - q))


def fit_llr(p: np.ndarray, label: np.ndarray, iterations: int = 50,
            ridge: float = 1e-6) -> tuple[float, float]:
    """(slope, offset) of the LLR mapping from samples of p and their 0/1 truth.

    Newton-Raphson (IRLS) logistic regression of ``label`` on ``logit(p)`` with weights that
    give both classes the same total weight. Raises ValueError without both classes.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(label, dtype=bool).ravel()
    keep = np.isfinite(p)
    p, y = p[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need samples of both classes (got {n_pos} change, {n_neg} no change)")
    x = logit(p)
    X = np.stack([x, np.ones_like(x)], axis=1)
    w = np.where(y, 0.5 / n_pos, 0.5 / n_neg)
    beta = np.zeros(2)
    for _ in range(iterations):
        eta = X @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        grad = X.T @ (w * (y - mu)) - ridge * beta
        hess = (X * (w * mu * (1 - mu))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return float(beta[0]), float(beta[1])


def sample_labels(p: np.ndarray, usable: np.ndarray, truth_change_day: np.ndarray,
                  obs_day: int, horizon_days: int, n_per_class: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n_per_class`` (p, label) samples of each class from one observation.

    ``truth_change_day`` and ``obs_day`` share one day numbering, 0 = no change.
    """
    t = truth_change_day.astype(np.int64)
    ok = usable & np.isfinite(p)
    positive = ok & (t > 0) & (t <= obs_day) & (t > obs_day - horizon_days)
    negative = ok & ((t == 0) | (t > obs_day))
    ps, labels = [], []
    for mask, label in ((positive, True), (negative, False)):
        idx = np.flatnonzero(mask)
        if idx.size > n_per_class:
            idx = rng.choice(idx, n_per_class, replace=False)
        ps.append(p.ravel()[idx])
        labels.append(np.full(idx.size, label))
    return np.concatenate(ps).astype(np.float32), np.concatenate(labels)


def class_separation(p: np.ndarray, label: np.ndarray, slope: float, offset: float
                     ) -> dict[str, float]:
    """Mean LLR per class and the fraction of each class with LLR > 0 (a quick check of a
    fitted mapping: change must drift up, no change down)."""
    llr = slope * logit(p) + offset
    y = np.asarray(label, dtype=bool)
    return {
        "mean_llr_change": float(llr[y].mean()) if y.any() else float("nan"),
        "mean_llr_no_change": float(llr[~y].mean()) if (~y).any() else float("nan"),
        "positive_rate_change": float((llr[y] > 0).mean()) if y.any() else float("nan"),
        "positive_rate_no_change": float((llr[~y] > 0).mean()) if (~y).any() else float("nan"),
    }
