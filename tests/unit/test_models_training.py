"""A tiny smoke training run on real OSCD crops (< 30 s on a CPU)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e .[train])")

from models.training import TrainConfig, train  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.skipif(not (DATA / "oscd").is_dir(), reason=f"real OSCD data not found at {DATA}")
@pytest.mark.parametrize("arch", ["s2", "dual"])
def test_one_epoch_smoke_training_writes_a_checkpoint(arch: str, tmp_path: Path) -> None:
    cfg = TrainConfig(
        arch=arch, data=str(DATA / "oscd"), s1=str(DATA / "oscd-s1"), epochs=1,
        steps_per_epoch=1, batch_size=2, crop=64, cities=["bercy"], out=str(tmp_path),
    )  # fmt: skip
    start = time.perf_counter()
    path = train(cfg)
    assert time.perf_counter() - start < 30
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["train_cities"] == ["bercy"] and 0.0 < ckpt["threshold"] < 1.0
    assert np.isfinite(ckpt["loss_per_epoch"][0])
    assert (tmp_path / "last.pt").exists() and (tmp_path / "train_summary.json").exists()


def test_jitter_changes_each_date_independently_and_keeps_shape() -> None:
    from models.training import jitter_optical, jitter_radar

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 32, 32)).astype(np.float32)
    bands = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    outs = [jitter_optical(x, bands, rng) for _ in range(20)]
    assert all(o.shape == x.shape and o.dtype == np.float32 for o in outs)
    moved = [float(np.abs(o - x).mean()) for o in outs]
    assert sum(m > 0.01 for m in moved) >= 10 and len({round(m, 6) for m in moved}) > 5
    assert jitter_radar(x[:1], rng).shape == (1, 32, 32)


def test_ema_moves_towards_the_weights() -> None:
    from models.networks import build_network
    from models.training import update_ema

    net = build_network("s1", 4)
    ema = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    update_ema(ema, net, 0.75)
    w = next(
        k for k, v in net.state_dict().items() if v.dtype.is_floating_point and v.abs().sum() > 0
    )
    assert torch.allclose(ema[w], 0.25 * net.state_dict()[w])


@pytest.mark.skipif(not (DATA / "oscd").is_dir(), reason=f"real OSCD data not found at {DATA}")
def test_interrupted_training_resumes_to_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    import models.training as training

    cfg = dict(arch="s2", data=str(DATA / "oscd"), epochs=2, steps_per_epoch=2, batch_size=2,
               crop=32, cities=["bercy"], jitter=1.0, ema_decay=0.9)  # fmt: skip
    full = torch.load(
        training.train(TrainConfig(**cfg, out=str(tmp_path / "a"))), weights_only=False
    )
    real = training.sample_batch
    calls = {"n": 0}

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "sample_batch", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        training.train(TrainConfig(**cfg, out=str(tmp_path / "b")))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(training, "sample_batch", real)
    resumed = torch.load(
        training.train(TrainConfig(**cfg, out=str(tmp_path / "b"))), weights_only=False
    )
    for k, v in full["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    assert resumed["loss_per_epoch"] == full["loss_per_epoch"]
