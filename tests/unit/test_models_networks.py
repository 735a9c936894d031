"""Network output shapes, ONNX export parity (torch vs onnxruntime) and tiled inference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e .[train])")

from models.export import example_inputs, export_checkpoint  # noqa: E402
from models.networks import ARCHITECTURES, build_network  # noqa: E402
from monitor.adapters.onnx_model import OnnxChangeModel  # noqa: E402
from monitor.domain.tiling import pad_to_multiple  # noqa: E402
from monitor.errors import ModelError  # noqa: E402


def _checkpoint(arch: str, tmp_path: Path) -> Path:
    """A freshly initialised network saved as a training checkpoint (no data needed)."""
    torch.manual_seed(0)
    net = build_network(arch, 16)
    # Non-trivial batch-norm statistics, as after training, so that export folds them.
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(*[torch.from_numpy(a) for a in example_inputs(arch, 2, 32, seed=3)])
    path = tmp_path / arch / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save(
        {
            "state_dict": net.state_dict(), "arch": arch, "width": 16, "config": {"threads": 1},
            "train_cities": ["paris"], "threshold": 0.5, "train_f1_at_threshold": 0.0,
            "train_seconds": 0.0,
        },
        path,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_output_shape_is_one_logit_per_pixel(arch: str) -> None:
    net = build_network(arch).eval()
    inputs = [torch.from_numpy(a) for a in example_inputs(arch, batch=3, size=40)]
    with torch.no_grad():
        out = net(*inputs)
    assert out.shape == (3, 1, 40, 40)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_onnx_matches_torch_within_1e4(arch: str, tmp_path: Path) -> None:
    from models.networks import ProbabilityHead
    from models.training import load_checkpoint

    onnx_path = export_checkpoint(_checkpoint(arch, tmp_path), tmp_path / "out")
    net, _ = load_checkpoint(tmp_path / arch / "model.pt")
    model = OnnxChangeModel.load(onnx_path)
    # A fixed input of another size and batch than the export trace: dynamic axes work.
    inputs = example_inputs(arch, batch=2, size=96, seed=7)
    with torch.no_grad():
        expected = ProbabilityHead(net)(*[torch.from_numpy(a) for a in inputs]).numpy()
    got = model.run_batch(*inputs)
    assert got.shape == (2, 1, 96, 96)
    assert np.abs(got - expected).max() <= 1e-4
    card = json.loads((tmp_path / "out" / f"{model.card['name']}.card.json").read_text())
    assert card["onnx_sha256"] == model.info.sha256
    assert (tmp_path / "out" / f"{model.card['name']}.card.md").read_text().count("BY-NC-SA") >= 1
    assert card["flops_per_pixel"] > 0


def test_tiled_onnx_prediction_equals_untiled(tmp_path: Path) -> None:
    onnx_path = export_checkpoint(_checkpoint("s2", tmp_path), tmp_path / "out")
    rng = np.random.default_rng(5)
    ref = rng.gamma(2.0, 0.05, size=(6, 300, 357)).astype(np.float32)
    obs = ref + rng.normal(0, 0.01, size=ref.shape).astype(np.float32)
    tiled = OnnxChangeModel.load(onnx_path, tile=128, batch_size=3).predict(ref, obs)
    # Untiled: one tile covering everything (padded to the alignment like the tiles).
    untiled = OnnxChangeModel.load(onnx_path, tile=512).predict(ref, obs)
    assert tiled.shape == (300, 357)
    assert np.abs(tiled - untiled).max() <= 1e-5
    assert pad_to_multiple(ref, 8)[0].shape == (6, 304, 360)


def test_ensemble_flips_and_calibration_are_inside_one_graph(tmp_path: Path) -> None:
    from models.networks import ExportHead
    from models.training import load_checkpoint

    first = _checkpoint("s2", tmp_path / "a")
    second = _checkpoint("s2", tmp_path / "b")
    ckpt = torch.load(second, weights_only=False)  # another member: perturbed weights
    ckpt["state_dict"] = {
        k: v + 0.05 * torch.randn_like(v) if v.dtype.is_floating_point else v
        for k, v in ckpt["state_dict"].items()
    }
    torch.save(ckpt, second)
    onnx_path = export_checkpoint(
        first, tmp_path / "out", tta=2, calibration=(0.6, -2.5), ensemble=[second]
    )
    nets = [load_checkpoint(p)[0] for p in (first, second)]
    head = ExportHead(nets, tta=2, calibration=(0.6, -2.5)).eval()
    inputs = example_inputs("s2", batch=1, size=48, seed=2)
    with torch.no_grad():
        expected = head(*[torch.from_numpy(a) for a in inputs]).numpy()
        plain = torch.sigmoid(nets[0](*[torch.from_numpy(a) for a in inputs])).numpy()
    model = OnnxChangeModel.load(onnx_path)
    assert np.abs(model.run_batch(*inputs) - expected).max() <= 1e-4
    assert np.abs(expected - plain).max() > 1e-3  # the ensemble and calibration do something
    assert model.card["graph"] == {
        "ensemble_members": 2,
        "test_time_flips": 2,
        "calibration": {"form": "p = sigmoid(a * mean_logit + b)", "a": 0.6, "b": -2.5},
    }


def test_ten_band_model_runs_through_the_runtime(tmp_path: Path) -> None:
    from models.oscd import S2_BANDS_10

    torch.manual_seed(0)
    net = build_network("s2", 8, s2_channels=10)
    path = tmp_path / "s2" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save(
        {
            "state_dict": net.state_dict(), "arch": "s2", "width": 8, "config": {"threads": 1},
            "bands": list(S2_BANDS_10), "train_cities": ["paris"], "threshold": 0.5,
            "train_f1_at_threshold": 0.0, "train_seconds": 0.0,
        },
        path,
    )  # fmt: skip
    model = OnnxChangeModel.load(export_checkpoint(path, tmp_path / "out", name="change_s2_10b"))
    assert model.info.s2_bands == S2_BANDS_10 and model.card["inputs"][0]["channels"] == 10
    rng = np.random.default_rng(0)
    ref = rng.gamma(2.0, 0.05, size=(10, 40, 56)).astype(np.float32)
    assert model.predict(ref, ref * 1.02).shape == (40, 56)
    with pytest.raises(ModelError, match=r"expected \(10, H, W\)"):
        model.predict(ref[:6], ref[:6])
