"""How the change state looks: colours, stretches and legends shared by the dashboard and
the demo report. Pure numpy (and pyproj for the one reprojection); no image IO here —
``monitor.reporting.png`` turns the RGBA arrays into PNG bytes.

* :func:`composite_rgb` — a true-colour composite from S2 reflectance (B04, B03, B02) with
  a 2–98 % stretch and a gamma; invalid (NaN) pixels become transparent.
* :func:`colour_change_days` — the time-of-change map: each changed pixel coloured by its
  day of change along :data:`CHANGE_RAMP` over a date range; unchanged pixels transparent.
* :data:`STATUS_COLOURS` and :func:`status_legend` — one colour per alert status.
* :func:`change_legend` — the ramp's stops and date ticks, JSON-ready for the page.
* :func:`warp_to_web_mercator` — resamples a city-grid raster (UTM) onto a grid aligned
  with Web Mercator, because a Leaflet image overlay is stretched linearly in that
  projection: without it the overlay would be off by up to ~100 m at a 10 km city's edge.

The ramp and status colours are also written, as literals, in ``services/static/app.js``
(the page colours alerts by the same rules); ``tests/unit/test_rendering.py`` checks that
the two copies agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import numpy as np
from pyproj import Transformer

from monitor.domain.grid import CityGrid
from monitor.domain.vocabulary import ALERT_STATUS_CODES, DAY_EPOCH
from monitor.errors import RenderError

# Alert status -> colour. Warm, increasingly saturated as an alert firms up; retracted is
# grey so that it recedes. Codes follow monitor.domain.vocabulary.Status.
STATUS_COLOURS: dict[str, str] = {
    "first": "#fdb863",
    "provisional": "#f46d43",
    "confirmed": "#d7191c",
    "retracted": "#9e9e9e",
    "withdrawn": "#6d4c41",
}
STATUS_CODES: dict[int, str] = ALERT_STATUS_CODES
STATUS_LABELS: dict[str, str] = {
    "first": "First detection",
    "provisional": "Provisional",
    "confirmed": "Confirmed",
    "retracted": "Retracted",
    "withdrawn": "Withdrawn",
}

# Time of change: viridis (perceptually uniform, colour-blind safe), older = purple,
# newer = yellow. Stops as (fraction, hex).
CHANGE_RAMP: tuple[tuple[float, str], ...] = (
    (0.0, "#440154"),
    (0.25, "#3b528b"),
    (0.5, "#21918c"),
    (0.75, "#5ec962"),
    (1.0, "#fde725"),
)

DEFAULT_LOW_PERCENT = 2.0
DEFAULT_HIGH_PERCENT = 98.0
DEFAULT_GAMMA = 1.3
_STRETCH_SAMPLE = 1_000_000


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b) 0..255."""
    c = colour.lstrip("#")
    if len(c) != 6:
        raise RenderError(f"colour {colour!r} is not #rrggbb", "give colours as #rrggbb")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def day_to_iso(day: int) -> str:
    """A state day (days since 2014-01-01, > 0) as an ISO date."""
    return (DAY_EPOCH + timedelta(days=int(day))).isoformat()


def iso_to_day(value: str | date) -> int:
    d = value if isinstance(value, date) else date.fromisoformat(value)
    return (d - DAY_EPOCH).days


# --------------------------------------------------------------------------- RGB composite
def composite_rgb(
    red: np.ndarray,
    green: np.ndarray,
    blue: np.ndarray,
    *,
    low_percent: float = DEFAULT_LOW_PERCENT,
    high_percent: float = DEFAULT_HIGH_PERCENT,
    gamma: float = DEFAULT_GAMMA,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """A true-colour RGBA (H, W, 4) uint8 image from three reflectance bands (H, W).

    One stretch for all three bands (the 2nd and 98th percentiles of the valid pixels of
    all bands together), so hues stay true: grey roofs stay grey, fields stay green. Then
    ``out = stretched ** (1 / gamma)`` brightens the dark end (reflectance is mostly low).
    Pixels that are NaN in any band, or False in ``valid``, are transparent (alpha 0).
    """
    bands = [np.asarray(b, dtype=np.float32) for b in (red, green, blue)]
    shape = bands[0].shape
    if any(b.shape != shape for b in bands) or len(shape) != 2:
        raise RenderError(
            f"RGB bands have shapes {[b.shape for b in bands]}",
            "give three 2-D bands of the same shape",
        )
    if not 0 <= low_percent < high_percent <= 100:
        raise RenderError(f"stretch {low_percent}-{high_percent} % is not a range",
                          "give 0 <= low < high <= 100")
    if gamma <= 0:
        raise RenderError(f"gamma {gamma} must be > 0", "use e.g. 1.0 (none) to 2.2")
    stack = np.stack(bands)
    ok = np.all(np.isfinite(stack), axis=0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    out = np.zeros((*shape, 4), dtype=np.uint8)
    if not ok.any():
        return out
    values = stack[:, ok].ravel()
    # Percentiles of a regular subsample: the same stretch to a fraction of a percent, at a
    # fraction of the cost on a city of millions of pixels.
    if values.size > _STRETCH_SAMPLE:
        values = values[:: values.size // _STRETCH_SAMPLE]
    lo, hi = (float(v) for v in np.percentile(values, [low_percent, high_percent]))
    if hi - lo < 1e-6:  # a uniform scene: show it mid-grey rather than divide by zero
        hi = lo + 1e-6
    scaled = np.nan_to_num(stack)
    scaled -= np.float32(lo)
    scaled *= np.float32(1.0 / (hi - lo))
    np.clip(scaled, 0.0, 1.0, out=scaled)
    if gamma != 1.0:
        np.power(scaled, np.float32(1.0 / gamma), out=scaled)
    scaled *= np.float32(255.0)
    rgb = np.rint(scaled).astype(np.uint8)
    out[..., :3] = np.moveaxis(rgb, 0, -1)
    out[..., 3] = np.where(ok, 255, 0).astype(np.uint8)
    out[~ok, :3] = 0
    return out


def composite_rgb_from_s2(
    s2: np.ndarray, valid: np.ndarray | None = None, **stretch: Any
) -> np.ndarray:
    """RGBA from a six-band S2 stack in the model band order B02, B03, B04, B08, B11, B12."""
    s2 = np.asarray(s2)
    if s2.ndim != 3 or s2.shape[0] < 3:
        raise RenderError(f"S2 stack has shape {s2.shape}",
                          "give (bands, H, W) with B02, B03, B04 first")
    return composite_rgb(s2[2], s2[1], s2[0], valid=valid, **stretch)


# --------------------------------------------------------------------------- ramps
def ramp_colours(fractions: np.ndarray, ramp: Sequence[tuple[float, str]] = CHANGE_RAMP
                 ) -> np.ndarray:
    """(…,) fractions in 0..1 -> (…, 3) uint8 colours, linear between the ramp stops."""
    positions = np.array([p for p, _ in ramp], dtype=np.float64)
    colours = np.array([hex_to_rgb(c) for _, c in ramp], dtype=np.float64)
    f = np.clip(np.asarray(fractions, dtype=np.float64), 0.0, 1.0)
    out = np.stack([np.interp(f, positions, colours[:, k]) for k in range(3)], axis=-1)
    return np.round(out).astype(np.uint8)


def colour_change_days(
    change_day: np.ndarray,
    start_day: int,
    end_day: int,
    *,
    mask: np.ndarray | None = None,
    opacity: int = 230,
) -> np.ndarray:
    """The time-of-change map as RGBA (H, W, 4) uint8.

    ``change_day``: uint16 days since 2014-01-01, 0 = no change. Pixels with a day and (if
    given) True in ``mask`` — e.g. the active, not retracted statuses — get the ramp colour
    of ``(day - start) / (end - start)``, clipped; all others are transparent.
    """
    days = np.asarray(change_day)
    if days.ndim != 2:
        raise RenderError(f"change-day array has shape {days.shape}", "give a 2-D (H, W) array")
    if end_day < start_day:
        raise RenderError(f"date range {start_day}..{end_day} runs backwards",
                          "give start_day <= end_day")
    show = days > 0
    if mask is not None:
        show &= np.asarray(mask, dtype=bool)
    span = max(end_day - start_day, 1)
    fractions = (days.astype(np.float64) - start_day) / span
    out = np.zeros((*days.shape, 4), dtype=np.uint8)
    out[..., :3] = ramp_colours(fractions)
    out[..., 3] = np.where(show, opacity, 0).astype(np.uint8)
    out[~show, :3] = 0
    return out


def change_day_range(change_day: np.ndarray, mask: np.ndarray | None = None
                     ) -> tuple[int, int] | None:
    """(first, last) day of change among the shown pixels, or None when none changed."""
    days = np.asarray(change_day)
    show = days > 0
    if mask is not None:
        show &= np.asarray(mask, dtype=bool)
    if not show.any():
        return None
    picked = days[show]
    return int(picked.min()), int(picked.max())


def colour_status(status: np.ndarray, opacity: int = 200) -> np.ndarray:
    """Per-pixel status codes (0 none .. 4 retracted) as RGBA; 0 is transparent."""
    codes = np.asarray(status)
    out = np.zeros((*codes.shape, 4), dtype=np.uint8)
    for code, name in STATUS_CODES.items():
        hit = codes == code
        out[hit, :3] = hex_to_rgb(STATUS_COLOURS[name])
        out[hit, 3] = opacity
    return out


# --------------------------------------------------------------------------- legends
def status_legend() -> list[dict[str, str]]:
    """[{status, label, colour}] in lifecycle order."""
    return [{"status": s, "label": STATUS_LABELS[s], "colour": STATUS_COLOURS[s]}
            for s in STATUS_COLOURS]


def change_legend(start_day: int, end_day: int, n_ticks: int = 5) -> dict[str, Any]:
    """The time-of-change legend, JSON-ready: ramp stops, date range and evenly spaced
    date ticks (``position`` 0..1 along the ramp, ``label`` ISO date)."""
    if end_day < start_day:
        raise RenderError(f"date range {start_day}..{end_day} runs backwards",
                          "give start_day <= end_day")
    n = max(2, n_ticks) if end_day > start_day else 1
    ticks = []
    for k in range(n):
        position = k / (n - 1) if n > 1 else 0.0
        day = round(start_day + position * (end_day - start_day))
        ticks.append({"position": position, "label": day_to_iso(day)})
    return {
        "kind": "ramp",
        "title": "Time of change",
        "start": day_to_iso(start_day),
        "end": day_to_iso(end_day),
        "stops": [[p, c] for p, c in CHANGE_RAMP],
        "ticks": ticks,
    }


# --------------------------------------------------------------------------- reprojection
_WEB_MERCATOR = 3857
_MAX_MERCATOR_LAT = 85.05112878


def _mercator_box(grid: CityGrid) -> tuple[float, float, float, float]:
    """The Web Mercator bounding box (x0, y0, x1, y1) of the grid's densified outline."""
    to_merc = Transformer.from_crs(grid.epsg, _WEB_MERCATOR, always_xy=True)
    left, bottom, right, top = grid.bounds
    n_edge = 64
    t = np.linspace(0.0, 1.0, n_edge)
    xs = np.concatenate([left + t * (right - left), np.full(n_edge, right),
                         right - t * (right - left), np.full(n_edge, left)])
    ys = np.concatenate([np.full(n_edge, top), top - t * (top - bottom),
                         np.full(n_edge, bottom), bottom + t * (top - bottom)])
    mx, my = to_merc.transform(xs, ys)
    return float(np.min(mx)), float(np.min(my)), float(np.max(mx)), float(np.max(my))


def web_mercator_bounds(grid: CityGrid) -> list[float]:
    """[west, south, east, north] in degrees of the images :func:`warp_to_web_mercator`
    makes for ``grid`` (the Leaflet overlay bounds)."""
    x0, y0, x1, y1 = _mercator_box(grid)
    to_lonlat = Transformer.from_crs(_WEB_MERCATOR, 4326, always_xy=True)
    west, south = to_lonlat.transform(x0, y0)
    east, north = to_lonlat.transform(x1, y1)
    return [float(west), max(float(south), -_MAX_MERCATOR_LAT), float(east),
            min(float(north), _MAX_MERCATOR_LAT)]


def warp_to_web_mercator(
    image: np.ndarray, grid: CityGrid, *, max_size: int | None = None
) -> tuple[np.ndarray, list[float]]:
    """Resample a city-grid image (H, W[, C]) onto a Web-Mercator-aligned grid covering
    the same extent (nearest neighbour, so colours and codes stay exact; outside the city
    grid becomes zeros, i.e. transparent for RGBA). Returns (image, [west, south, east,
    north] in degrees) — exactly the bounds a Leaflet ``imageOverlay`` needs.

    The output keeps about the input's pixel count; ``max_size`` caps its longer side (a
    browser need not get more pixels than a screen shows).
    """
    arr = np.asarray(image)
    if arr.shape[:2] != grid.shape:
        raise RenderError(f"image of shape {arr.shape[:2]} is not on the grid {grid.shape}",
                          "render the image from this city's state")
    from_merc = Transformer.from_crs(_WEB_MERCATOR, grid.epsg, always_xy=True)
    left, _, _, top = grid.bounds
    mx0, my0, mx1, my1 = _mercator_box(grid)
    # Same pixel count as the input, split by the mercator box's aspect ratio.
    aspect = (mx1 - mx0) / max(my1 - my0, 1e-9)
    n_pixels = grid.width * grid.height
    out_h = max(1, round(float(np.sqrt(n_pixels / aspect))))
    out_w = max(1, round(out_h * aspect))
    if max_size is not None and max(out_w, out_h) > max_size:
        scale = max_size / max(out_w, out_h)
        out_w, out_h = max(1, round(out_w * scale)), max(1, round(out_h * scale))
    # Reproject a coarse lattice of pixel centres exactly and interpolate between its nodes:
    # over a city the mapping is smooth (errors far below a millimetre at a 16 px step),
    # and it spares millions of pyproj calls.
    step = 16
    ks = np.unique(np.append(np.arange(0, out_w, step), out_w - 1))
    js = np.unique(np.append(np.arange(0, out_h, step), out_h - 1))
    kx = mx0 + (ks + 0.5) * (mx1 - mx0) / out_w
    ky = my1 - (js + 0.5) * (my1 - my0) / out_h
    gx, gy = np.meshgrid(kx, ky)
    ux_c, uy_c = (np.asarray(v).reshape(gx.shape) for v in from_merc.transform(gx, gy))
    ux = _interpolate_lattice(ux_c, js, ks, out_h, out_w)
    uy = _interpolate_lattice(uy_c, js, ks, out_h, out_w)
    col = np.floor((ux.ravel() - left) / grid.pixel_size).astype(np.int64)
    row = np.floor((top - uy.ravel()) / grid.pixel_size).astype(np.int64)
    inside = (col >= 0) & (col < grid.width) & (row >= 0) & (row < grid.height)
    out = np.zeros((out_h * out_w, *arr.shape[2:]), dtype=arr.dtype)
    out[inside] = arr[row[inside], col[inside]]
    return out.reshape((out_h, out_w, *arr.shape[2:])), web_mercator_bounds(grid)


def _interpolate_lattice(values: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                         height: int, width: int) -> np.ndarray:
    """Bilinear interpolation of values known at lattice (rows x cols) to every pixel."""
    along_rows = np.empty((len(rows), width))
    for i in range(len(rows)):
        along_rows[i] = np.interp(np.arange(width), cols, values[i])
    out = np.empty((height, width))
    r = np.arange(height)
    upper = np.clip(np.searchsorted(rows, r, side="right") - 1, 0, len(rows) - 2) \
        if len(rows) > 1 else np.zeros(height, dtype=np.int64)
    if len(rows) == 1:
        out[:] = along_rows[0]
        return out
    r0, r1 = rows[upper], rows[upper + 1]
    t = ((r - r0) / np.maximum(r1 - r0, 1))[:, None]
    out[:] = along_rows[upper] * (1 - t) + along_rows[upper + 1] * t
    return out
