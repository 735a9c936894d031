"""Tiling with overlap and blending equals the untiled prediction."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.domain.tiling import blend_weights, pad_to_multiple, plan_tiles, predict_tiled


@pytest.mark.parametrize("shape", [(100, 70), (256, 256), (601, 437), (40, 1000)])
def test_tiles_cover_the_raster_with_aligned_origins(shape: tuple[int, int]) -> None:
    h, w = shape
    windows = plan_tiles(h, w, tile=128, overlap=64, align=8)
    covered = np.zeros(shape, int)
    for win in windows:
        assert win.row % 8 == 0 and win.col % 8 == 0
        assert win.row + win.height <= h and win.col + win.width <= w
        covered[win.slices] += 1
    assert covered.min() >= 1


def test_blend_weights_sum_positive_everywhere() -> None:
    h, w = 601, 437
    total = np.zeros((h, w), np.float32)
    for win in plan_tiles(h, w, tile=128, overlap=64, align=8):
        total[win.slices] += blend_weights(win, h, w, margin=16, overlap=64)
    assert total.min() > 0


def _box_mean(tiles: list[np.ndarray], radius: int = 5) -> np.ndarray:
    """A toy 'network' with a receptive field of `radius` px (zero padding like a conv)."""
    x = tiles[0].sum(axis=1) - tiles[1].sum(axis=1)
    padded = np.pad(x, ((0, 0), (radius, radius), (radius, radius)))
    out = np.zeros_like(x)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out += padded[
                :, radius + dy : radius + dy + x.shape[1], radius + dx : radius + dx + x.shape[2]
            ]
    return out[:, None]


def test_tiled_equals_untiled_for_a_toy_convolution() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 203, 317)).astype(np.float32)
    b = rng.normal(size=(3, 203, 317)).astype(np.float32)
    # The untiled reference sees the same reflect padding to a multiple of `align` at the far
    # edges as the runtime applies (a network needs aligned sizes either way).
    pa, pb = (pad_to_multiple(x[None], 8)[0] for x in (a, b))
    untiled = _box_mean([pa, pb])[0, 0, :203, :317]
    tiled = predict_tiled(_box_mean, [a, b], tile=64, overlap=16, margin=8, align=8, batch_size=3)
    np.testing.assert_allclose(tiled, untiled, atol=1e-4)


def test_only_the_tiles_under_needed_pixels_run_and_they_match_the_whole_map() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 203, 317)).astype(np.float32)
    b = rng.normal(size=(3, 203, 317)).astype(np.float32)
    whole = predict_tiled(_box_mean, [a, b], tile=64, overlap=16, margin=8, align=8)
    needed = np.zeros((203, 317), bool)
    needed[5, 7] = needed[150:160, 300:317] = True  # one corner pixel, one edge patch
    runs: list[int] = []

    def counting(tiles: list[np.ndarray]) -> np.ndarray:
        runs.append(tiles[0].shape[0])
        return _box_mean(tiles)

    part = predict_tiled(counting, [a, b], tile=64, overlap=16, margin=8, align=8,
                         needed=needed)
    np.testing.assert_allclose(part[needed], whole[needed], atol=1e-6)
    n_tiles = len(plan_tiles(203, 317, 64, 16, 8))
    assert 2 <= sum(runs) <= 6 < n_tiles  # the tiles under two small areas, not all
    with pytest.raises(ValueError, match="needed"):
        predict_tiled(_box_mean, [a, b], tile=64, overlap=16, margin=8, needed=needed[:10])


def test_pad_to_multiple() -> None:
    arr = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    padded, ph, pw = pad_to_multiple(arr, 8)
    assert padded.shape == (2, 8, 8) and (ph, pw) == (3, 1)
    np.testing.assert_array_equal(padded[:, :5, :7], arr)


def test_rejects_overlap_smaller_than_two_margins() -> None:
    a = np.zeros((1, 64, 64), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        predict_tiled(lambda t: t[0], [a], tile=32, overlap=8, margin=8)


@pytest.mark.parametrize(
    ("length", "tile", "expected_tiles"),
    [(1000, 1024, 1), (1100, 1024, 2), (2500, 1024, 3), (4000, 1024, 5), (1000, 256, 6)],
)
def test_tiles_are_as_few_and_as_small_as_the_overlap_allows(
    length: int, tile: int, expected_tiles: int
) -> None:
    windows = plan_tiles(length, 8, tile=tile, overlap=96, align=8)
    assert len(windows) == expected_tiles
    starts = [w.row for w in windows]
    ends = [w.row + w.height for w in windows]
    assert starts[0] == 0 and ends[-1] == length
    assert all(w.height <= tile + 7 for w in windows)
    # neighbours overlap by at least the overlap, so blending has room for its margins
    assert all(e - s >= 96 for e, s in zip(ends[:-1], starts[1:], strict=True))
    # balanced: no tile is much larger than needed (1,100 px -> two ~600 px tiles)
    assert max(w.height for w in windows) - min(w.height for w in windows) < 8
