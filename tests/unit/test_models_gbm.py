"""The tree-ensemble learner ships as ONE ONNX graph: features + trees + calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e .[train])")
lgb = pytest.importorskip("lightgbm", reason="lightgbm is not installed (pip install -e .[train])")
pytest.importorskip("onnxmltools", reason="onnxmltools is not installed (pip install -e .[train])")

from models.features import PixelFeatures  # noqa: E402
from models.gbm import city_features, export_gbm  # noqa: E402
from models.oscd import S2_BANDS_10  # noqa: E402
from monitor.adapters.onnx_model import OnnxChangeModel  # noqa: E402

BANDS6 = ("B02", "B03", "B04", "B08", "B11", "B12")


@pytest.mark.parametrize(("arch", "bands"), [("s2", BANDS6), ("dual", BANDS6), ("s2", S2_BANDS_10)])
def test_exported_graph_equals_features_plus_trees(arch: str, bands, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    c = len(bands)
    inputs = [rng.normal(size=(c, 40, 48)).astype(np.float32) for _ in range(2)]
    if arch == "dual":
        inputs += [rng.normal(size=(1, 40, 48)).astype(np.float32) for _ in range(2)]
    module = PixelFeatures(bands, with_s1=arch == "dual").eval()
    f = city_features(module, inputs)
    x = f.reshape(f.shape[0], -1).T
    y = (x[:, 0] + x[:, 5 * c] > 0.3).astype(float)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1,
                         "num_leaves": 7}, lgb.Dataset(x, y), 15)  # fmt: skip
    booster.save_model(str(tmp_path / "gbm.txt"))
    (tmp_path / "train_summary.json").write_text(json.dumps({"arch": arch, "bands": list(bands)}))
    path = export_gbm(tmp_path, tmp_path / "m.onnx", calibration=(0.8, -0.3))
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: a[None] for n, a in zip(names, inputs, strict=True)})[0]
    p = booster.predict(x)
    expected = 1 / (1 + np.exp(-(0.8 * np.log(p / (1 - p)) - 0.3)))
    assert got.shape == (1, 1, 40, 48)
    assert np.abs(got[0, 0].ravel() - expected).max() <= 1e-4
    assert isinstance(OnnxChangeModel, type)  # runtime adapter importable without torch use
