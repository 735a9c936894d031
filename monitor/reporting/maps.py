"""Map layers of a city's change state for the dashboard and the report: PNG bytes ready
for a Leaflet image overlay, plus the bounds and legends that go with them.

Every image is resampled onto a Web-Mercator-aligned grid
(:func:`monitor.domain.rendering.warp_to_web_mercator`), so the overlay sits exactly on
the map; :func:`map_bounds` gives the overlay bounds for a grid without rendering.

The API serves these (see ``services/dashboard.py``); the demo puts them in its report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from monitor.domain.grid import CityGrid
from monitor.domain.rendering import (
    change_day_range,
    change_legend,
    colour_change_days,
    composite_rgb_from_s2,
    status_legend,
    warp_to_web_mercator,
    web_mercator_bounds,
)
from monitor.domain.vocabulary import ACTIVE_STATUSES, status_code
from monitor.reporting.png import encode_png

# A browser shows a city layer at most a few screens wide; more pixels only cost bytes.
DEFAULT_MAX_SIZE = 2048
# Statuses whose pixels appear on the time-of-change map (first, provisional, confirmed);
# retracted and none do not.
_ACTIVE_CODES = tuple(int(s) for s in ACTIVE_STATUSES)


class ChangeStateView(Protocol):
    """What the renderers read from ``monitor.domain.state.CityState``."""

    grid: CityGrid

    @property
    def status(self) -> np.ndarray: ...

    @property
    def first_day(self) -> np.ndarray: ...

    @property
    def change_day(self) -> np.ndarray: ...

    @property
    def s2_count(self) -> np.ndarray: ...

    def reference_for(self, modality: str, orbit: str | None = None
                      ) -> tuple[np.ndarray, np.ndarray] | None: ...


def map_bounds(grid: CityGrid) -> list[float]:
    """[west, south, east, north] (degrees) of the layers rendered for ``grid``."""
    return web_mercator_bounds(grid)


def change_days_of(state: ChangeStateView, statuses: Sequence[str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(day of change per pixel, mask of pixels to show): the estimated change day where
    known, else the first-detection day; pixels of ``statuses`` (alert status names),
    by default the active ones (first, provisional, confirmed)."""
    days = np.where(state.change_day > 0, state.change_day, state.first_day)
    codes = _ACTIVE_CODES if statuses is None else tuple(status_code(s) for s in statuses)
    mask = np.isin(state.status, codes)
    return days, mask


def change_date_range(state: ChangeStateView) -> tuple[int, int] | None:
    """(first, last) state day of change among active pixels, None when nothing changed."""
    days, mask = change_days_of(state)
    return change_day_range(days, mask)


def render_change_png(state: ChangeStateView, *, start_day: int | None = None,
                      end_day: int | None = None, max_size: int = DEFAULT_MAX_SIZE,
                      statuses: Sequence[str] | None = None) -> bytes:
    """The time-of-change layer as PNG (transparent where nothing changed) of the pixels
    of ``statuses`` (default: the active ones). The colour range defaults to the state's
    own first..last day of change among active pixels, as in its legend, whatever
    ``statuses`` shows, so the colours mean the same dates in every view."""
    days, mask = change_days_of(state, statuses)
    found = change_date_range(state)
    lo, hi = found if found else (1, 2)
    rgba = colour_change_days(days, start_day if start_day is not None else lo,
                              end_day if end_day is not None else hi, mask=mask)
    warped, _ = warp_to_web_mercator(rgba, state.grid, max_size=max_size)
    return encode_png(warped)


def s2_composite_of(state: ChangeStateView) -> tuple[np.ndarray, np.ndarray] | None:
    """(six-band S2 reflectance (6, H, W) float32, observed mask) from the state's S2
    reference — the running clear-sky composite — or None before the reference exists.
    Pixels seen clear at least once are shown, even before their reference is complete:
    a background needs coverage more than a settled mean."""
    reference = state.reference_for("s2")
    if reference is None:
        return None
    s2, _ = reference
    observed = np.asarray(state.s2_count) > 0
    return np.asarray(s2, dtype=np.float32), observed


def render_rgb_png(state: ChangeStateView, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes | None:
    """The latest clear-sky true-colour composite as PNG, or None before any S2 scene."""
    composite = s2_composite_of(state)
    if composite is None:
        return None
    s2, observed = composite
    rgba = composite_rgb_from_s2(s2, valid=observed)
    warped, _ = warp_to_web_mercator(rgba, state.grid, max_size=max_size)
    return encode_png(warped)


def map_info(state: ChangeStateView) -> dict[str, Any]:
    """What the page needs to place and explain the layers (JSON-ready)."""
    found = change_date_range(state)
    return {
        "bounds": map_bounds(state.grid),
        "has_rgb": s2_composite_of(state) is not None,
        "has_change": found is not None,
        "change_legend": change_legend(*found) if found else None,
        "status_legend": status_legend(),
    }
