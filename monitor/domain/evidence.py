"""Classical change evidence: p(change) without a learned model. Pure numpy.

The same contract as ``OnnxChangeModel.predict(reference, observation, valid)``: a float32
(H, W) p(change), NaN where not valid. Used when no model is loaded, as the measured
baseline, and to calibrate the state before the learned models exist.

* S2: change-vector magnitude between the reference and the observation, each
  standardised per band by its own robust statistics (``normalise_s2``), so illumination
  and atmosphere (a per-band affine shift) cancel; mapped through a logistic.
* S1: log-ratio of the running mean to the reference mean of one orbit (a difference of
  scaled dB), one-sided: construction raises backscatter (double bounce), so increases
  count as change.

The logistic constants only shape p; the state's calibrated LLR mapping turns p into
evidence, so they need not be exact.
"""

from __future__ import annotations

import numpy as np

from monitor.domain.normalisation import S1_DB_MAX, S1_DB_MIN, normalise_s2

S2_CVA_CENTRE = 1.5  # normalised units (sigmas): p = 0.5 here
S2_CVA_SLOPE = 3.0
S1_DB_CENTRE = 2.0  # dB increase of the 3-month mean: p = 0.5 here
S1_DB_SLOPE = 2.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def s2_change_probability(reference: np.ndarray, observation: np.ndarray,
                          valid: np.ndarray | None = None) -> np.ndarray:
    """p(change) from two (6, H, W) reflectance images (reference, new observation)."""
    if reference.shape != observation.shape or reference.ndim != 3:
        raise ValueError(f"reference {reference.shape} and observation {observation.shape} "
                         "must both be (C, H, W)")
    ref = normalise_s2(reference, valid)
    obs = normalise_s2(observation, valid)
    magnitude = np.sqrt(np.mean((obs - ref) ** 2, axis=0))
    p = _sigmoid(S2_CVA_SLOPE * (magnitude - S2_CVA_CENTRE))
    return p if valid is None else np.where(valid, p, np.float32(np.nan))


def s1_change_probability(reference: np.ndarray, current: np.ndarray,
                          valid: np.ndarray | None = None) -> np.ndarray:
    """p(change) from the (1, H, W) reference and current means of one orbit (scaled dB)."""
    if reference.shape != current.shape or reference.ndim != 3:
        raise ValueError(f"reference {reference.shape} and current {current.shape} "
                         "must both be (1, H, W)")
    db_increase = (current[0] - reference[0]) * (S1_DB_MAX - S1_DB_MIN)
    p = _sigmoid(S1_DB_SLOPE * (db_increase - S1_DB_CENTRE))
    return p if valid is None else np.where(valid, p, np.float32(np.nan))
