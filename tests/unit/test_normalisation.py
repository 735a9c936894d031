"""Properties of the input normalisation shared by training and the runtime."""

from __future__ import annotations

import numpy as np

from monitor.domain.normalisation import (
    normalise_s1,
    normalise_s2,
    robust_band_stats,
    s1_from_db,
    s1_from_linear,
)


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 0.05, size=(6, 64, 64)).astype(np.float32)


def test_s2_is_invariant_to_a_per_band_affine_shift() -> None:
    # L1C -> L2A is, to first order, a positive per-band gain and offset: it must cancel.
    img = _image()
    gain = np.array([0.8, 0.9, 1.1, 1.2, 0.95, 1.05], dtype=np.float32)[:, None, None]
    offset = np.array([-0.05, -0.03, -0.02, 0.01, 0.0, 0.02], dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(normalise_s2(img), normalise_s2(img * gain + offset), atol=1e-4)


def test_s2_output_is_centred_scaled_and_clipped() -> None:
    out = normalise_s2(_image())
    assert out.dtype == np.float32 and out.shape == (6, 64, 64)
    np.testing.assert_allclose(np.median(out, axis=(1, 2)), 0.0, atol=1e-3)
    p10, p90 = np.percentile(out, [10, 90], axis=(1, 2))
    np.testing.assert_allclose(p90 - p10, 2.5631, rtol=1e-3)
    assert np.abs(out).max() <= 6.0


def test_s2_invalid_and_nan_pixels_become_zero_and_do_not_bias_stats() -> None:
    img = _image()
    valid = np.ones((64, 64), bool)
    valid[:10] = False
    dirty = img.copy()
    dirty[:, :10] = 1000.0  # clouds / fill values outside the valid mask
    dirty[:, 20, 20] = np.nan
    out = normalise_s2(dirty, valid)
    assert np.all(out[:, :10] == 0.0) and np.all(out[:, 20, 20] == 0.0)
    centre, _ = robust_band_stats(img, valid)
    centre_dirty, _ = robust_band_stats(dirty, valid)
    np.testing.assert_allclose(centre, centre_dirty, rtol=1e-3)


def test_uniform_band_is_not_blown_up() -> None:
    img = np.full((6, 32, 32), 0.02, dtype=np.float32)
    img[:, 0, 0] = 0.021
    assert np.abs(normalise_s2(img)).max() < 1.0


def test_s1_unit_conversions_agree() -> None:
    db = np.array([-30.0, -25.0, -10.0, 5.0, 10.0], dtype=np.float32)
    np.testing.assert_allclose(s1_from_db(db), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(s1_from_linear(10 ** (db / 10)), s1_from_db(db), atol=1e-5)
    assert s1_from_linear(np.array([0.0, -1.0]))[0] == 0.0
    out = normalise_s1(np.array([[[0.5, np.nan]]], dtype=np.float32))
    assert out[0, 0, 0] == 0.0 and out[0, 0, 1] == 0.0
