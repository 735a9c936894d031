"""Classical change baselines, unsupervised, thresholded per city with Otsu. Numpy only.

- Spectral-index differencing (S2): magnitude of (dNDVI, dNDBI); construction lowers NDVI
  and raises NDBI.
- Change-vector analysis (S2): magnitude of the difference of the per-image standardised
  band vectors (the same normalisation as the networks).
- Log-ratio (S1): |dB(t2) - dB(t1)| = |10 log10(sigma2 / sigma1)|, averaged over orbits.
"""

from __future__ import annotations

import numpy as np

from monitor.domain.normalisation import S1_DB_MAX, S1_DB_MIN, S2_BANDS, normalise_s2

_B = {b: i for i, b in enumerate(S2_BANDS)}


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample (maximises the between-class variance)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("inf")
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / np.maximum(a + b, 1e-6)


def index_difference(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """|(dNDVI, dNDBI)| between two (6, H, W) reflectance images."""
    ndvi = [_nd(x[_B["B08"]], x[_B["B04"]]) for x in (t1, t2)]
    ndbi = [_nd(x[_B["B11"]], x[_B["B08"]]) for x in (t1, t2)]
    return np.hypot(ndvi[1] - ndvi[0], ndbi[1] - ndbi[0]).astype(np.float32)


def change_vector(t1: np.ndarray, t2: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Magnitude of the change vector of standardised bands."""
    d = normalise_s2(t2, valid) - normalise_s2(t1, valid)
    return np.sqrt((d**2).sum(axis=0)).astype(np.float32)


def s1_log_ratio(t1: list[np.ndarray], t2: list[np.ndarray]) -> np.ndarray:
    """|dB difference| of scaled-dB VV, averaged over orbits."""
    span = S1_DB_MAX - S1_DB_MIN
    return np.mean([np.abs(b[0] - a[0]) * span for a, b in zip(t1, t2, strict=True)], axis=0)


def otsu_change(score: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Boolean change map: score above its Otsu threshold over valid pixels."""
    return score >= otsu_threshold(score[valid])
