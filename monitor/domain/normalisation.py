"""Input normalisation of the change models, shared by training and the runtime.

Training (``models/``) and inference (``monitor/adapters/onnx_model.py``) both call these
functions, so the two can never drift apart. Pure numpy.

Sentinel-2
    Bands ``S2_BANDS`` = B02, B03, B04, B08, B11, B12 (every provider serves them in L2A),
    as reflectance (DN / 10000, after removing any BOA offset). The model is trained on
    OSCD, which is L1C (top of atmosphere), while the live pipeline reads L2A (bottom of
    atmosphere). The difference between the two is, to first order, a per-band affine map
    (path radiance adds an offset, transmittance scales). ``normalise_s2`` therefore
    standardises **each image, each band** by robust statistics of that same image
    (median and the 10-90 % percentile spread over valid pixels): any per-band affine
    shift between L1C and L2A, or between two dates' atmospheres, cancels out.

Sentinel-1
    VV backscatter in the model unit "scaled dB": dB clipped to [-25, 5] and mapped
    linearly to [0, 1] (the unit of the DS-UNet data). ``s1_from_db`` and
    ``s1_from_linear`` convert to it; ``normalise_s1`` is a fixed affine map because
    absolute backscatter (bright built-up areas) carries meaning and radar needs no
    atmospheric correction.
"""

from __future__ import annotations

import numpy as np

S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")
S1_BANDS: tuple[str, ...] = ("VV",)

S1_DB_MIN = -25.0
S1_DB_MAX = 5.0
S1_SCALED_MEAN = 0.5
S1_SCALED_STD = 0.15

# The 10-90 % percentile spread of a normal distribution is 2.563 sigma.
_SPREAD_TO_SIGMA = 2.5631
# A floor on the band scale (reflectance) so that a uniform image (all water) does not
# blow noise up to several sigmas.
_MIN_SCALE = 0.005
_CLIP_SIGMAS = 6.0


def robust_band_stats(
    image: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band centre (median) and scale (10-90 % spread / 2.563) over valid pixels.

    ``image`` is (C, H, W); ``valid`` is (H, W) bool or None (= finite pixels). Returns two
    float32 arrays of shape (C,). A band with no valid pixel gets centre 0, scale 1.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    mask = np.all(np.isfinite(image), axis=0)
    if valid is not None:
        mask &= valid.astype(bool)
    centre = np.zeros(image.shape[0], dtype=np.float32)
    scale = np.ones(image.shape[0], dtype=np.float32)
    if not mask.any():
        return centre, scale
    # Subsample large images: percentiles of 1 M pixels are as good as of 100 M.
    step = max(1, int(np.sqrt(mask.sum() / 1_000_000)))
    sub_mask = mask[::step, ::step]
    for band in range(image.shape[0]):
        values = image[band, ::step, ::step][sub_mask]
        p10, p50, p90 = np.percentile(values, [10.0, 50.0, 90.0])
        centre[band] = p50
        scale[band] = max((p90 - p10) / _SPREAD_TO_SIGMA, _MIN_SCALE)
    return centre, scale


def normalise_s2(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Standardise an S2 reflectance image (C=6, H, W) per band by its own robust statistics.

    Invalid pixels (``valid`` False or non-finite) become 0 (the band median). The result is
    float32, clipped to +-6 sigma.
    """
    image = np.asarray(image, dtype=np.float32)
    centre, scale = robust_band_stats(image, valid)
    out = (image - centre[:, None, None]) / scale[:, None, None]
    np.clip(out, -_CLIP_SIGMAS, _CLIP_SIGMAS, out=out)
    bad = ~np.all(np.isfinite(image), axis=0)
    if valid is not None:
        bad |= ~valid.astype(bool)
    out[:, bad] = 0.0
    return out


def s1_from_db(db: np.ndarray) -> np.ndarray:
    """Backscatter in dB -> the model's scaled-dB unit ([-25, 5] dB -> [0, 1], clipped)."""
    scaled = (np.asarray(db, dtype=np.float32) - S1_DB_MIN) / (S1_DB_MAX - S1_DB_MIN)
    return np.clip(scaled, 0.0, 1.0)


def s1_from_linear(power: np.ndarray) -> np.ndarray:
    """Linear backscatter power (e.g. gamma0 RTC) -> the model's scaled-dB unit.

    Zero or negative power (no data, shadow) maps to the floor (-25 dB -> 0).
    """
    power = np.asarray(power, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(np.where(power > 0, power, 10 ** (S1_DB_MIN / 10.0)))
    return s1_from_db(db)


def normalise_s1(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scaled-dB S1 (C=1, H, W) -> zero-mean-ish network input; invalid pixels become 0."""
    image = np.asarray(image, dtype=np.float32)
    out = (image - S1_SCALED_MEAN) / S1_SCALED_STD
    bad = ~np.all(np.isfinite(image), axis=0)
    if valid is not None:
        bad |= ~valid.astype(bool)
    out[:, bad] = 0.0
    return out
