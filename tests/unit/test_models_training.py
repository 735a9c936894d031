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
