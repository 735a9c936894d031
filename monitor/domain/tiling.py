"""Tiling a city-sized raster for a fully convolutional model, and stitching without seams.

A tile's prediction near its inner edges depends on padding the model never saw in the
whole image; every tile therefore gives zero weight to ``margin`` pixels along each inner
edge, ramps up to full weight across the rest of the overlap, and the stitched result is
the weighted mean of the tiles. With ``margin`` at least the model's receptive-field radius
and tile origins on multiples of the model's pooling factor (``align``), the stitched
prediction equals the untiled one; with a toy per-pixel function it is exact.

Memory is bounded by the output (H x W float32 twice) plus one batch of tiles. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class TileWindow:
    """A tile: rows [row, row + height), cols [col, col + width) of the full raster."""

    row: int
    col: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def _axis_spans(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """(start, size) along one axis: as few spans as fit, balanced in size.

    The fewest spans of at most ``tile`` px that overlap by ``overlap`` are taken, and made
    as small as possible (so a 1,000 px axis with 1,024 px tiles is one span, and 1,100 px
    are two spans of ~600 px, not two of 1,024 px). All starts are multiples of ``align``:
    aligned origins keep the pooling grid of every tile in phase with the whole image. The
    last span runs to the raster end, so it may be up to ``align - 1`` px longer.
    """
    if length <= tile:
        return [(0, length)]
    n_min = -(-(length - overlap) // (tile - overlap))
    for n in range(max(n_min, 2), n_min + 4):
        size = -(-(length + (n - 1) * overlap) // n)
        size = -(-size // align) * align
        while size <= tile:
            step = (size - overlap) // align * align
            last = (length - size) // align * align
            starts = [i * step for i in range(n - 1)] + [last]
            if step >= align and 0 < last - starts[-2] <= size - overlap:
                return [(s, size) for s in starts[:-1]] + [(last, length - last)]
            size += align
    # Fallback (tiny tiles relative to align): fixed step from the start.
    step = max(align, (tile - overlap) // align * align)
    last = (length - tile) // align * align
    spans = [(s, tile) for s in range(0, last, step)]
    spans.append((last, length - last))
    return spans


def plan_tiles(
    height: int, width: int, tile: int = 256, overlap: int = 128, align: int = 8
) -> list[TileWindow]:
    """Windows covering (height, width) with tiles of ``tile`` px overlapping by >= ``overlap``.

    Rasters smaller than a tile give one window of the raster's size.
    """
    if tile % align or overlap >= tile or overlap < 0:
        raise ValueError(
            f"tile {tile} must be a multiple of align {align} and larger than overlap {overlap}"
        )
    return [
        TileWindow(r, c, h, w)
        for r, h in _axis_spans(height, tile, overlap, align)
        for c, w in _axis_spans(width, tile, overlap, align)
    ]


def _axis_weight(length: int, start: int, total: int, margin: int, ramp: int) -> np.ndarray:
    pos = np.arange(length, dtype=np.float32)
    w = np.ones(length, dtype=np.float32)
    if start > 0:  # inner edge at the tile's start
        w = np.minimum(w, np.clip((pos - margin + 1) / (ramp + 1), 0.0, 1.0))
    if start + length < total:  # inner edge at the tile's end
        dist = length - 1 - pos
        w = np.minimum(w, np.clip((dist - margin + 1) / (ramp + 1), 0.0, 1.0))
    return w


def blend_weights(
    window: TileWindow, height: int, width: int, margin: int, overlap: int
) -> np.ndarray:
    """(h, w) weights of a tile: 0 within ``margin`` of inner edges, linear ramp, then 1.

    Edges on the raster border keep full weight (the untiled prediction sees the same
    border there).
    """
    ramp = max(overlap - 2 * margin, 0)
    wy = _axis_weight(window.height, window.row, height, margin, ramp)
    wx = _axis_weight(window.width, window.col, width, margin, ramp)
    return np.outer(wy, wx)


def pad_to_multiple(array: np.ndarray, align: int) -> tuple[np.ndarray, int, int]:
    """Reflect-pad the last two axes of ``array`` up to multiples of ``align``."""
    h, w = array.shape[-2:]
    ph, pw = -h % align, -w % align
    if not ph and not pw:
        return array, 0, 0
    pad = [(0, 0)] * (array.ndim - 2) + [(0, ph), (0, pw)]
    mode: Literal["reflect", "edge"] = "reflect" if h > ph and w > pw else "edge"
    return np.pad(array, pad, mode=mode), ph, pw


def _batches(items: Sequence[TileWindow], size: int) -> Iterator[Sequence[TileWindow]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def predict_tiled(
    predict: Callable[[list[np.ndarray]], np.ndarray],
    inputs: Sequence[np.ndarray],
    tile: int = 256,
    overlap: int = 128,
    margin: int = 48,
    align: int = 8,
    batch_size: int = 4,
    needed: np.ndarray | None = None,
) -> np.ndarray:
    """Run ``predict`` tile by tile over (C, H, W) ``inputs`` and stitch an (H, W) map.

    ``predict`` takes one (N, C_i, h, w) array per input (h, w multiples of ``align``) and
    returns (N, 1, h, w) or (N, h, w). Tiles of the same shape are batched together.

    With ``needed`` (H, W bool), only the tiles that give weight to a needed pixel run: the
    map equals the full one at every needed pixel and is 0 where no tile ran (a caller that
    wants a few scattered pixels pays for the tiles under them, not for the scene).
    """
    if overlap < 2 * margin:
        raise ValueError(f"overlap {overlap} must be at least twice the margin {margin}")
    height, width = inputs[0].shape[-2:]
    for a in inputs:
        if a.shape[-2:] != (height, width):
            raise ValueError(f"inputs differ in size: {[x.shape for x in inputs]}")
    windows = plan_tiles(height, width, tile, overlap, align)
    if needed is not None:
        if needed.shape != (height, width):
            raise ValueError(f"needed {needed.shape} differs from the inputs' {(height, width)}")
        windows = [w for w in windows
                   if np.any(needed[w.slices] & (blend_weights(w, height, width, margin, overlap) > 0))]
    acc = np.zeros((height, width), dtype=np.float32)
    wsum = np.zeros((height, width), dtype=np.float32)
    by_shape: dict[tuple[int, int], list[TileWindow]] = {}
    for win in windows:
        by_shape.setdefault((win.height, win.width), []).append(win)
    for group in by_shape.values():
        for batch in _batches(group, batch_size):
            tiles = []
            for a in inputs:
                stacked = np.stack([a[(slice(None), *win.slices)] for win in batch])
                tiles.append(pad_to_multiple(stacked, align)[0])
            out = np.asarray(predict(tiles), dtype=np.float32)
            if out.ndim == 4:
                out = out[:, 0]
            for win, pred in zip(batch, out, strict=True):
                weight = blend_weights(win, height, width, margin, overlap)
                rs, cs = win.slices
                acc[rs, cs] += pred[: win.height, : win.width] * weight
                wsum[rs, cs] += weight
    return acc / np.maximum(wsum, 1e-12)
