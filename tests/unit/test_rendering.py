"""Rendering: RGB stretch, time-of-change colours, legends, Web Mercator warp, PNG codec,
and the map layers of a real CityState."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import box

from monitor.domain.grid import CityGrid
from monitor.domain.rendering import (
    CHANGE_RAMP,
    STATUS_COLOURS,
    change_day_range,
    change_legend,
    colour_change_days,
    colour_status,
    composite_rgb,
    composite_rgb_from_s2,
    day_to_iso,
    hex_to_rgb,
    iso_to_day,
    ramp_colours,
    status_legend,
    warp_to_web_mercator,
    web_mercator_bounds,
)
from monitor.errors import RenderError
from monitor.reporting.png import decode_png, encode_png

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- RGB composite
def test_composite_stretches_two_to_ninety_eight_percent_and_keeps_hue() -> None:
    ramp = np.linspace(0.0, 0.5, 101, dtype=np.float32).reshape(1, 101)
    rgba = composite_rgb(ramp, ramp, ramp, gamma=1.0)
    assert rgba.shape == (1, 101, 4) and rgba.dtype == np.uint8
    # Below the 2nd percentile saturates at black, above the 98th at white.
    assert rgba[0, :3, :3].max() == 0
    assert rgba[0, -3:, :3].min() == 255
    # Equal bands stay grey (one stretch for all three bands), monotonic in brightness.
    assert np.all(rgba[0, :, 0] == rgba[0, :, 1]) and np.all(rgba[0, :, 1] == rgba[0, :, 2])
    assert np.all(np.diff(rgba[0, :, 0].astype(int)) >= 0)
    assert np.all(rgba[..., 3] == 255)


def test_composite_gamma_brightens_mid_tones() -> None:
    band = np.linspace(0.0, 1.0, 201, dtype=np.float32).reshape(1, -1)
    flat = composite_rgb(band, band, band, gamma=1.0)
    bright = composite_rgb(band, band, band, gamma=2.0)
    mid = 100
    assert bright[0, mid, 0] > flat[0, mid, 0] + 40
    assert bright[0, 0, 0] == flat[0, 0, 0] == 0 and bright[0, -1, 0] == 255


def test_composite_nan_and_invalid_are_transparent() -> None:
    red = np.array([[0.1, np.nan], [0.2, 0.3]], dtype=np.float32)
    green = np.full((2, 2), 0.2, dtype=np.float32)
    blue = np.full((2, 2), 0.1, dtype=np.float32)
    valid = np.array([[True, True], [False, True]])
    rgba = composite_rgb(red, green, blue, valid=valid)
    assert rgba[0, 1, 3] == 0 and rgba[1, 0, 3] == 0
    assert rgba[0, 0, 3] == 255 and rgba[1, 1, 3] == 255
    assert rgba[0, 1, :3].tolist() == [0, 0, 0]


def test_composite_from_s2_uses_b04_b03_b02() -> None:
    s2 = np.zeros((6, 4, 4), dtype=np.float32)
    s2[2, :, :2] = 0.3  # B04 (red) high on the left half
    s2[0, :, 2:] = 0.3  # B02 (blue) high on the right half
    rgba = composite_rgb_from_s2(s2)
    assert rgba[0, 0, 0] > rgba[0, 0, 2]  # red on the left
    assert rgba[0, 3, 2] > rgba[0, 3, 0]  # blue on the right


def test_composite_all_invalid_and_bad_input() -> None:
    nan = np.full((3, 3), np.nan, dtype=np.float32)
    assert composite_rgb(nan, nan, nan)[..., 3].max() == 0
    with pytest.raises(RenderError, match="shapes"):
        composite_rgb(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(RenderError, match="gamma"):
        composite_rgb(nan, nan, nan, gamma=0)


# ---------------------------------------------------------------- time of change
def test_change_colours_follow_the_ramp_and_zero_is_transparent() -> None:
    days = np.array([[0, 100, 150, 200, 400]], dtype=np.uint16)
    rgba = colour_change_days(days, 100, 200)
    assert rgba[0, 0, 3] == 0
    assert rgba[0, 1, :3].tolist() == list(hex_to_rgb(CHANGE_RAMP[0][1]))
    assert rgba[0, 2, :3].tolist() == list(hex_to_rgb(CHANGE_RAMP[2][1]))
    assert rgba[0, 3, :3].tolist() == list(hex_to_rgb(CHANGE_RAMP[-1][1]))
    assert rgba[0, 4, :3].tolist() == rgba[0, 3, :3].tolist()  # clipped past the end
    assert np.all(rgba[0, 1:, 3] > 0)


def test_change_colours_honour_the_mask_and_single_day_range() -> None:
    days = np.array([[10, 10]], dtype=np.uint16)
    rgba = colour_change_days(days, 10, 10, mask=np.array([[True, False]]))
    assert rgba[0, 0, 3] > 0 and rgba[0, 1, 3] == 0
    with pytest.raises(RenderError, match="backwards"):
        colour_change_days(days, 20, 10)


def test_ramp_interpolates_between_stops() -> None:
    mid = ramp_colours(np.array([0.125]))[0]
    a, b = np.array(hex_to_rgb(CHANGE_RAMP[0][1])), np.array(hex_to_rgb(CHANGE_RAMP[1][1]))
    assert np.all(np.abs(mid.astype(int) - (a + b) / 2) <= 1)


def test_change_day_range_and_status_colours() -> None:
    days = np.array([[0, 5, 9], [7, 0, 3]], dtype=np.uint16)
    assert change_day_range(days) == (3, 9)
    assert change_day_range(days, mask=np.array([[1, 1, 0], [1, 0, 0]], bool)) == (5, 7)
    assert change_day_range(np.zeros((2, 2), np.uint16)) is None
    status = np.array([[0, 1, 2, 3, 4]], dtype=np.uint8)
    rgba = colour_status(status)
    assert rgba[0, 0, 3] == 0
    assert rgba[0, 3, :3].tolist() == list(hex_to_rgb(STATUS_COLOURS["confirmed"]))


def test_legends_are_json_ready_and_dated() -> None:
    start, end = iso_to_day("2020-01-01"), iso_to_day("2021-01-01")
    legend = change_legend(start, end, n_ticks=3)
    assert legend["start"] == "2020-01-01" and legend["end"] == "2021-01-01"
    assert [t["label"] for t in legend["ticks"]] == ["2020-01-01", "2020-07-02", "2021-01-01"]
    assert legend["stops"][0] == [0.0, CHANGE_RAMP[0][1]]
    assert change_legend(start, start)["ticks"] == [{"position": 0.0, "label": "2020-01-01"}]
    assert [x["status"] for x in status_legend()] == ["first", "provisional", "confirmed",
                                                      "retracted", "withdrawn"]
    assert day_to_iso(1) == "2014-01-02" and iso_to_day(date(2014, 1, 2)) == 1


def test_dashboard_javascript_uses_the_same_colours() -> None:
    """app.js colours alerts itself; its literals must match the Python palette."""
    script = (REPO / "services" / "static" / "app.js").read_text()
    for status, colour in STATUS_COLOURS.items():
        assert re.search(rf"{status}:\s*\"{colour}\"", script), f"{status} colour differs"
    for _, colour in CHANGE_RAMP:
        assert colour in script, f"ramp stop {colour} missing from app.js"


# ---------------------------------------------------------------- Web Mercator warp
def _grid() -> CityGrid:
    return CityGrid.from_aoi(box(11.50, 48.10, 11.53, 48.12))


def test_warp_places_pixels_where_they_are_on_the_ground() -> None:
    grid = _grid()
    image = np.zeros((*grid.shape, 4), dtype=np.uint8)
    image[..., 3] = 255
    r, c = grid.height // 3, grid.width // 4
    image[r:r + 3, c:c + 3, 0] = 255  # a 30 m red square
    warped, bounds = warp_to_web_mercator(image, grid)
    assert bounds == web_mercator_bounds(grid)
    west, south, east, north = bounds
    # Where the square's centre is in lon/lat ...
    x = grid.origin_x + (c + 1.5) * grid.pixel_size
    y = grid.origin_y - (r + 1.5) * grid.pixel_size
    lon, lat = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform(x, y)
    # ... and where the red pixels ended up in the warped image (mercator-linear rows).
    merc = Transformer.from_crs(4326, 3857, always_xy=True)
    (mx0, mx1), (my0, my1) = (np.array(v) for v in zip(merc.transform(west, south),
                                                         merc.transform(east, north), strict=True))
    rows, cols = np.nonzero(warped[..., 0] == 255)
    mx = mx0 + (cols.mean() + 0.5) * (mx1 - mx0) / warped.shape[1]
    my = my1 - (rows.mean() + 0.5) * (my1 - my0) / warped.shape[0]
    got_lon, got_lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(mx, my)
    metres = np.hypot((got_lon - lon) * 111320 * np.cos(np.radians(lat)), (got_lat - lat) * 110540)
    assert metres < 10.0
    # Corners outside the (rotated) UTM grid are transparent; about the same pixel count.
    assert warped[..., 3].min() == 0
    assert 0.8 < warped.shape[0] * warped.shape[1] / grid.n_pixels < 1.25


def test_warp_caps_size_and_checks_shape() -> None:
    grid = _grid()
    warped, _ = warp_to_web_mercator(np.ones(grid.shape, np.uint8), grid, max_size=50)
    assert max(warped.shape) == 50
    with pytest.raises(RenderError, match="not on the grid"):
        warp_to_web_mercator(np.ones((3, 3), np.uint8), grid)


# ---------------------------------------------------------------- PNG
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_round_trip(channels: int) -> None:
    rng = np.random.default_rng(1)
    shape = (17, 23) if channels == 1 else (17, 23, channels)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[5:9] = 7  # a flat band makes the 'Up' filter win somewhere
    data = encode_png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = decode_png(data)
    assert np.array_equal(back.reshape(image.shape), image)


def test_png_refuses_bad_images() -> None:
    with pytest.raises(RenderError, match="dtype"):
        encode_png(np.zeros((2, 2), np.float32))
    with pytest.raises(RenderError, match="shape"):
        encode_png(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(RenderError, match="signature"):
        decode_png(b"not a png")


# ---------------------------------------------------------------- layers of a city state
class _FakeState:
    """The attributes of CityState the renderers read, with a known S2 composite."""

    def __init__(self, grid: CityGrid) -> None:
        self.grid = grid
        h, w = grid.shape
        self.status = np.zeros((h, w), np.uint8)
        self.first_day = np.zeros((h, w), np.uint16)
        self.change_day = np.zeros((h, w), np.uint16)
        self.s2_count = np.full((h, w), 3, np.uint8)
        self._s2 = np.full((6, h, w), 0.1, np.float32)
        self._s2[2, : h // 2] = 0.3  # red north half

    def reference_for(self, modality: str, orbit: str | None = None):  # noqa: ANN201
        return (self._s2, self.s2_count >= 3) if modality == "s2" else None


def test_map_layers_of_a_real_city_state() -> None:
    from monitor.domain.state import CityState
    from monitor.reporting.maps import map_bounds, map_info, render_change_png, render_rgb_png

    grid = _grid()
    state = CityState.create(grid)
    assert render_rgb_png(state) is None  # no S2 scene yet: no background
    info = map_info(state)
    assert info["has_change"] is False and info["change_legend"] is None
    assert info["bounds"] == map_bounds(grid)
    arrays = state.to_arrays()
    arrays["status"][10:20, 10:20] = 3  # confirmed
    arrays["first_day"][10:20, 10:20] = iso_to_day("2021-03-01")
    arrays["change_day"][10:20, 10:20] = iso_to_day("2021-02-01")
    arrays["status"][30:40, 30:40] = 4  # retracted: not on the map
    arrays["first_day"][30:40, 30:40] = iso_to_day("2020-03-01")
    arrays["status"][50:52, 50:52] = 1  # first detection, no change day yet
    arrays["first_day"][50:52, 50:52] = iso_to_day("2021-06-01")
    info = map_info(state)
    assert info["change_legend"]["start"] == "2021-02-01"
    assert info["change_legend"]["end"] == "2021-06-01"
    image = decode_png(render_change_png(state))
    assert 90 <= int((image[..., 3] > 0).sum()) <= 115  # 100 + 4 pixels, resampled


def test_rgb_layer_from_the_s2_reference() -> None:
    from monitor.reporting.maps import map_info, render_rgb_png

    state = _FakeState(_grid())
    png = render_rgb_png(state)
    assert png is not None
    image = decode_png(png)
    opaque = image[..., 3] == 255
    h = image.shape[0]
    top, bottom = image[: h // 3][opaque[: h // 3]], image[-h // 3:][opaque[-h // 3:]]
    assert top[:, 0].mean() > bottom[:, 0].mean() + 100  # the red half is north
    assert map_info(state)["has_rgb"] is True


def test_rgb_layer_of_a_real_city_state_after_s2_scenes() -> None:
    """The background comes from the state's own S2 reference, fed by applied scenes."""
    from monitor.domain.state import CityState, Observation
    from monitor.reporting.maps import render_rgb_png

    grid = _grid()
    state = CityState.create(grid)
    h, w = grid.shape
    values = np.full((6, h, w), 0.08, np.float32)
    values[2, : h // 2] = 0.35  # B04 high: red north half
    valid = np.ones((h, w), bool)
    valid[:, : w // 4] = False  # never seen clear: transparent
    for k in range(3):
        state.apply(Observation(scene_id=f"s2-{k}", modality="s2", orbit=None,
                                acquired=date(2021, 5, 1 + 10 * k), values=values, valid=valid))
    png = render_rgb_png(state)
    assert png is not None
    image = decode_png(png)
    opaque = image[..., 3] == 255
    assert 0.6 < opaque.mean() < 0.8  # three quarters of the grid, minus the warp margins
    top, bottom = image[: image.shape[0] // 3], image[-image.shape[0] // 3:]
    assert top[..., 0][top[..., 3] == 255].mean() > bottom[..., 0][bottom[..., 3] == 255].mean() + 100


def test_warp_lattice_matches_exact_reprojection() -> None:
    """The interpolated lattice picks the same source pixel as exact per-pixel pyproj."""
    grid = CityGrid.from_aoi(box(11.40, 48.05, 11.47, 48.10))
    index = np.arange(grid.n_pixels, dtype=np.int64).reshape(grid.shape) + 1
    warped, (west, south, east, north) = warp_to_web_mercator(index, grid)
    oh, ow = warped.shape
    merc = Transformer.from_crs(4326, 3857, always_xy=True)
    (x0, y0), (x1, y1) = merc.transform(west, south), merc.transform(east, north)
    gx, gy = np.meshgrid(x0 + (np.arange(ow) + 0.5) * (x1 - x0) / ow,
                         y1 - (np.arange(oh) + 0.5) * (y1 - y0) / oh)
    ux, uy = Transformer.from_crs(3857, grid.epsg, always_xy=True).transform(gx, gy)
    col = np.floor((ux - grid.origin_x) / grid.pixel_size).astype(np.int64)
    row = np.floor((grid.origin_y - uy) / grid.pixel_size).astype(np.int64)
    inside = (col >= 0) & (col < grid.width) & (row >= 0) & (row < grid.height)
    exact = np.where(inside, np.clip(row, 0, grid.height - 1) * grid.width
                     + np.clip(col, 0, grid.width - 1) + 1, 0)
    assert (warped == exact).mean() > 0.9999
