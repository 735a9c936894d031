"""Training pairs from a synthetic archive, and a smoke training run on them (issue 5)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio

from models.oscd import DatasetError
from models.synthetic_data import load_synthetic_pairs
from monitor.synthetic.landscape import to_epoch_days
from tests.integration.inference_fixtures import small_archive  # noqa: F401  (fixture)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_pairs_label_what_changed_between_their_dates(small_archive) -> None:  # noqa: F811
    pairs = load_synthetic_pairs(small_archive.root, pairs=3, min_gap_days=90, seed=1)
    assert len(pairs) == 3
    with rasterio.open(small_archive.truth.change_date) as src:
        cleared = src.read(1)
    with rasterio.open(small_archive.truth.built_date) as src:
        built = src.read(1)
    for pair in pairs:
        d1, d2 = (to_epoch_days(date.fromisoformat(d)) for d in
                  (pair.name[10:20], pair.name[21:31]))
        assert d2 - d1 >= 90
        expected = ((cleared > d1) & (cleared <= d2)) | ((built > d1) & (built <= d2))
        np.testing.assert_array_equal(pair.label.astype(bool), expected)
        assert pair.s2_t1.shape == (6, *pair.label.shape) == pair.s2_t2.shape
        # reflectance, with cloudy / no-data pixels of either date zeroed out of `valid`
        valid = pair.valid
        assert 0.2 < valid.mean() <= 1.0
        assert np.all(pair.s2_t1[:, valid] > 0) and np.all(pair.s2_t1 < 2.0)
        assert not pair.has_s1


def test_no_pair_far_enough_apart_is_a_clear_error(small_archive) -> None:  # noqa: F811
    with pytest.raises(DatasetError, match="at least 9999 days apart"):
        load_synthetic_pairs(small_archive.root, min_gap_days=9999)


def test_not_an_archive_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is not a synthetic archive"):
        load_synthetic_pairs(tmp_path)


def test_smoke_training_on_synthetic_and_on_oscd_plus_synthetic(
    small_archive, tmp_path: Path  # noqa: F811
) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e .[train])")
    from models.training import TrainConfig, city_weights, prepare_city, train

    cfg = TrainConfig(arch="s2", dataset="synthetic", data=str(small_archive.root), epochs=1,
                      steps_per_epoch=1, batch_size=2, crop=64, synthetic_pairs=2,
                      out=str(tmp_path / "synthetic"))
    ckpt = torch.load(train(cfg), weights_only=False)
    assert all(n.startswith("synthetic-") for n in ckpt["train_cities"])
    assert len(ckpt["train_cities"]) == 2 and np.isfinite(ckpt["loss_per_epoch"][0])

    if (DATA / "oscd").is_dir():
        cfg = TrainConfig(arch="s2", dataset="oscd+synthetic", data=str(DATA / "oscd"),
                          synthetic=str(small_archive.root), synthetic_pairs=2,
                          synthetic_share=0.25, cities=["bercy"], epochs=1, steps_per_epoch=1,
                          batch_size=2, crop=64, out=str(tmp_path / "mixed"))
        ckpt = torch.load(train(cfg), weights_only=False)
        names = ckpt["train_cities"]
        assert names[0] == "bercy" and sum(n.startswith("synthetic-") for n in names) == 2
        # the synthetic pairs take the asked share of the draws, whatever their size
        pairs = load_synthetic_pairs(small_archive.root, pairs=2)
        from models.oscd import load_cities

        cities = [prepare_city(c) for c in load_cities(DATA / "oscd", ["bercy"], None) + pairs]
        weights = city_weights(cities, 0.25)
        assert weights[0] == pytest.approx(0.75) and weights[1:].sum() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="needs real S1"):
        train(TrainConfig(arch="dual", dataset="synthetic", data=str(small_archive.root),
                          out=str(tmp_path / "dual")))
