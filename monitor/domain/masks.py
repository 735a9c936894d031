"""Which pixels of a scene are valid observations (pure numpy).

"No valid observation" is never evidence: clouds, shadows, snow, saturation and no-data
are masked out before anything is compared with the city's reference.
"""

from __future__ import annotations

import numpy as np

# Sentinel-2 L2A scene classification (SCL) values.
SCL_NO_DATA = 0
SCL_SATURATED = 1
SCL_DARK = 2
SCL_CLOUD_SHADOW = 3
SCL_VEGETATION = 4
SCL_NOT_VEGETATED = 5
SCL_WATER = 6
SCL_UNCLASSIFIED = 7
SCL_CLOUD_MEDIUM = 8
SCL_CLOUD_HIGH = 9
SCL_CIRRUS = 10
SCL_SNOW = 11

S2_CLEAR_CLASSES = (SCL_DARK, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER, SCL_UNCLASSIFIED)

# Sentinel-1: linear power below -35 dB is thermal/border noise, not a measurement.
S1_NOISE_FLOOR_LINEAR = 10 ** (-35 / 10)
S1_MAX_LINEAR = 10 ** (20 / 10)  # above +20 dB: saturation or a corrupt value


def s2_valid_mask(scl: np.ndarray) -> np.ndarray:
    """True where the SCL class is a clear land/water observation."""
    lookup = np.zeros(256, dtype=bool)
    lookup[list(S2_CLEAR_CLASSES)] = True
    return lookup[scl.astype(np.uint8)]


def s1_valid_mask(linear: np.ndarray) -> np.ndarray:
    """True where backscatter (linear power) is a finite value above the noise floor."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(linear) & (linear > S1_NOISE_FLOOR_LINEAR) & (linear < S1_MAX_LINEAR)
