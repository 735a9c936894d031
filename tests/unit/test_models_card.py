"""The shipped artifacts load with onnxruntime alone and their cards say what they must."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.adapters.onnx_model import OnnxChangeModel, default_artifacts_dir
from monitor.errors import ModelError

SHIPPED = default_artifacts_dir()


@pytest.mark.skipif(
    not (SHIPPED / "change_s2.card.json").exists(), reason=f"no shipped artifacts in {SHIPPED}"
)
def test_shipped_models_load_and_predict() -> None:
    s2 = OnnxChangeModel.load()
    info = s2.info
    assert info.name == "change_s2" and info.modality == "s2" and len(info.sha256) == 64
    assert info.s2_bands == ("B02", "B03", "B04", "B08", "B11", "B12")
    assert 0.0 < info.threshold < 1.0 and info.train_cities
    assert "NON-COMMERCIAL" in s2.card["licence"]["labels"]
    rng = np.random.default_rng(0)
    ref = rng.gamma(2.0, 0.05, size=(6, 37, 53)).astype(np.float32)
    valid = np.ones((37, 53), bool)
    valid[0] = False
    p = s2.predict(ref, ref * 1.01, valid)
    assert p.shape == (37, 53) and p.dtype == np.float32
    assert np.isnan(p[0]).all() and np.all((p[1:] >= 0) & (p[1:] <= 1))
    # 2.0.0: calibrated p(change), threshold and calibration from leave-cities-out
    assert info.version.startswith("2.") and "calibration" in s2.card["graph"]
    assert any("leave-cities-out pooled" in k for k in s2.card["metrics"])
    dual = OnnxChangeModel.load("change_dual")
    s1 = np.full((1, 37, 53), 0.5, np.float32)
    assert dual.predict_dual(ref, ref, s1, s1).shape == (37, 53)
    with pytest.raises(ModelError, match="dual-stream"):
        dual.predict(ref, ref)


@pytest.mark.skipif(
    not (SHIPPED / "change_s2_int8.card.json").exists(), reason=f"no int8 artifact in {SHIPPED}"
)
def test_int8_model_is_close_to_the_float_model() -> None:
    float_model = OnnxChangeModel.load("change_s2")
    int8 = OnnxChangeModel.load("change_s2_int8")
    assert int8.info.name == "change_s2_int8" and "int8" in int8.card["quantisation"]
    assert int8.info.threshold == float_model.info.threshold
    rng = np.random.default_rng(1)
    ref = rng.gamma(2.0, 0.05, size=(6, 64, 64)).astype(np.float32)
    obs = ref.copy()
    obs[:, 20:40, 20:40] *= 1.8  # a bright new block
    a, b = float_model.predict(ref, obs), int8.predict(ref, obs)
    assert np.abs(a - b).mean() < 0.02


def test_missing_model_raises_model_error_with_hint(tmp_path) -> None:
    with pytest.raises(ModelError, match="What to do"):
        OnnxChangeModel.load(tmp_path / "nothing.onnx")


@pytest.mark.skipif(
    not (SHIPPED / "change_dual.card.json").exists(), reason=f"no shipped artifacts in {SHIPPED}"
)
def test_the_dual_model_takes_neutral_radar_where_radar_is_not_usable() -> None:
    dual = OnnxChangeModel.load("change_dual")
    rng = np.random.default_rng(3)
    ref = rng.gamma(2.0, 0.05, size=(6, 40, 48)).astype(np.float32)
    obs = ref * rng.uniform(0.8, 1.2, size=ref.shape).astype(np.float32)
    s1_ref = rng.uniform(0.3, 0.7, size=(1, 40, 48)).astype(np.float32)
    s1_cur = s1_ref.copy()
    s1_cur[:, 10:20, 10:20] += 0.3  # a radar brightening there ...
    no_radar = np.zeros((40, 48), bool)
    no_radar[10:20, 10:20] = True   # ... where the radar is not usable
    masked = dual.predict_dual(ref, obs, s1_ref, s1_cur, s1_valid=~no_radar)
    from monitor.domain.normalisation import S1_SCALED_MEAN

    neutral_ref, neutral_cur = s1_ref.copy(), s1_cur.copy()
    neutral_ref[:, no_radar] = neutral_cur[:, no_radar] = S1_SCALED_MEAN
    neutral = dual.predict_dual(ref, obs, neutral_ref, neutral_cur)
    np.testing.assert_allclose(masked, neutral, atol=1e-5)
    assert np.isfinite(masked).all()  # S2 still counts there: scored, not NaN
    assert not np.allclose(dual.predict_dual(ref, obs, s1_ref, s1_cur), masked, atol=1e-4)
