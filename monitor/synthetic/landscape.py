"""The synthetic city on the ground: land cover, phenology, water levels, construction sites.

Pure numpy (and shapely for site footprints). Everything a sensor sees on a given day is
derived from a ``Landscape`` by ``surface_at``; the sensors (``sensors.py``) add the
atmosphere, clouds, geometry and noise.

Land-cover codes (the truth map ``landcover.tif``):
    1 water (permanent), 2 built-up, 3 vegetation (natural, seasonal), 4 cropland
    (sown and harvested every year), 5 bare soil, 6 seasonal water (flooded part of the year).
Cropland, vegetation and seasonal water are the confusers: they change a lot, but come back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import shapely
from shapely.affinity import rotate
from shapely.geometry import Polygon, box

from monitor.domain.grid import CityGrid

WATER, BUILT, VEGETATION, CROPLAND, BARE, SEASONAL_WATER = 1, 2, 3, 4, 5, 6
LANDCOVER_NAMES = {
    WATER: "water", BUILT: "built-up", VEGETATION: "vegetation", CROPLAND: "cropland",
    BARE: "bare soil", SEASONAL_WATER: "seasonal water",
}
EPOCH = date(1970, 1, 1)

# Site phases as seen on a given day.
PHASE_BEFORE, PHASE_CLEARED, PHASE_BUILT = 0, 1, 2


def to_epoch_days(day: date) -> int:
    return (day - EPOCH).days


def from_epoch_days(days: int) -> date:
    return EPOCH + timedelta(days=int(days))


def _interp_weights(n_out: int, cell: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Lattice index and smooth-step weight of each output pixel, and the lattice size."""
    x = (np.arange(n_out) + 0.5) / cell
    i0 = np.floor(x).astype(np.intp)
    t = (x - i0).astype(np.float32)
    return i0, t * t * (3 - 2 * t), int(math.ceil(n_out / cell)) + 2


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float,
                 octaves: int = 3) -> np.ndarray:
    """Spatially coherent noise (zero mean, unit std) with features about ``cell`` pixels.

    Coarse Gaussian lattices are interpolated separably with gathers (no BLAS: its thread
    start-up costs more than the work on these small arrays).
    """
    h, w = shape
    out = np.zeros(shape, dtype=np.float32)
    amp = 1.0
    for o in range(octaves):
        c = max(cell / 2**o, 1.0)
        ri, rt, nr = _interp_weights(h, c)
        ci, ct, nc = _interp_weights(w, c)
        lattice = rng.standard_normal((nr, nc), dtype=np.float32)
        rows = lattice[ri] * (1 - rt)[:, None] + lattice[ri + 1] * rt[:, None]
        out += amp * (rows[:, ci] * (1 - ct)[None, :] + rows[:, ci + 1] * ct[None, :])
        amp *= 0.5
    out -= out.mean()
    std = out.std()
    return out / std if std > 0 else out


def seasonal_wetness(day_of_year: np.ndarray | float, peak_doy: int) -> np.ndarray | float:
    """0 (height of the dry season) .. 1 (height of the wet season), smooth over the year."""
    return 0.5 + 0.5 * np.cos(2 * np.pi * (np.asarray(day_of_year) - peak_doy) / 365.25)


@dataclass
class Site:
    """A construction site: cleared on ``start``, fully built-up on ``built``."""

    site_id: int
    polygon_utm: Polygon
    start: date
    built: date
    former_landcover: int
    n_pixels: int
    area_ha: float


@dataclass
class Landscape:
    grid: CityGrid
    start: date
    end: date
    wet_season_peak_doy: int
    landcover: np.ndarray            # uint8 codes, at the start of the period
    elevation: np.ndarray            # float32, metres above mean water level (water < 0)
    texture: np.ndarray              # float32 multiplicative reflectance texture (~1)
    veg_base: np.ndarray             # float32 mean vigour of natural vegetation
    veg_amp: np.ndarray              # float32 seasonal amplitude of vigour
    veg_phase: np.ndarray            # float32 days of phenology shift per pixel
    built_albedo: np.ndarray         # float32 optical brightness factor of built-up
    built_radar: np.ndarray          # float32 median VV gamma0 of built-up (linear)
    built_orientation: np.ndarray    # float32 dominant wall orientation (radians)
    parcel_id: np.ndarray            # int32 cropland parcel per pixel (-1 elsewhere)
    crop_calendar: np.ndarray        # int32 (n_parcels, n_years, 4): sow1, harvest1, sow2, harvest2
    crop_first_year: int
    site_labels: np.ndarray          # int32 site id per pixel (0 = none)
    change_date: np.ndarray          # int32 epoch days of clearing (0 = no change)
    built_date: np.ndarray           # int32 epoch days the pixel becomes built-up (0 = never)
    sites: list[Site] = field(default_factory=list)
    site_albedo: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))
    site_radar: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape


def water_level_at(day: date, peak_doy: int, seed: int) -> float:
    """Water level (m, relative to mean) on ``day``: seasonal swing plus a yearly anomaly."""
    doy = day.timetuple().tm_yday
    yearly = np.random.default_rng([seed, 7, day.year]).normal(0, 0.15)
    level = 0.45 * (2 * seasonal_wetness(doy - 30, peak_doy) - 1) + yearly
    # Permanent water (below -0.7 m) never falls dry; the seasonal fringe reaches +0.7 m.
    return float(np.clip(level, -0.68, 0.68))


def generate_landscape(grid: CityGrid, start: date, end: date, n_sites: int, seed: int,
                       wet_season_peak_doy: int = 200) -> Landscape:
    """Draw a city: an urban core with its fringe, a river and a lagoon, crops, sites."""
    rng = np.random.default_rng([seed, 1])
    h, w = grid.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    size = float(max(h, w))
    r = np.hypot(yy - cy, xx - cx) / size  # 0 at centre, ~0.7 in the corners

    # Urban core with a ragged edge, plus satellite villages.
    urban_score = (0.30 - r) / 0.08 + 0.9 * smooth_noise(rng, (h, w), size / 8)
    villages = smooth_noise(rng, (h, w), max(size / 25, 4)) > 2.1
    built = (urban_score > 0) | villages

    # A meandering river across the city and a lagoon in one corner: elevation in metres.
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    meander = 0.06 * size * np.sin(2 * np.pi * u / (0.6 * size) + rng.uniform(0, 2 * np.pi))
    meander += 0.02 * size * smooth_noise(rng, (h, w), size / 4, octaves=1)
    half_width = max(3.0, rng.uniform(4, 7))  # pixels: 40-70 m
    river = (np.abs(v - meander) - half_width) / 4.0  # 4 px (40 m) of bank per metre
    corner = rng.integers(0, 4)
    ly, lx = [(0, 0), (0, w), (h, 0), (h, w)][corner]
    lagoon_r = np.hypot(yy - ly, xx - lx) / size
    lagoon = (lagoon_r - 0.22 - 0.05 * smooth_noise(rng, (h, w), size / 10)) / 0.03
    elevation = np.minimum(river, lagoon).astype(np.float32)
    permanent = elevation < -0.7
    seasonal = (elevation >= -0.7) & (elevation < 0.7)
    built &= elevation > 1.5

    # Cropland: rectangular parcels in the periphery (rows of varying height and width).
    parcel_id = np.full((h, w), -1, dtype=np.int32)
    pid = np.zeros((h, w), dtype=np.int32)
    row_edges = np.cumsum(rng.integers(10, 28, size=h // 10 + 2))
    row_band = np.searchsorted(row_edges, np.arange(h), side="right")
    n_bands = int(row_band.max()) + 1
    max_cols = w // 10 + 2
    col_edges = np.cumsum(rng.integers(12, 36, size=(n_bands, max_cols)), axis=1)
    for b in range(n_bands):
        rows = row_band == b
        cols = np.searchsorted(col_edges[b], np.arange(w), side="right")
        pid[rows, :] = b * max_cols + cols[None, :]
    suitability = r * 4 + 0.8 * smooth_noise(rng, (h, w), size / 6) - 1.0
    mean_suit = np.bincount(pid.ravel(), suitability.ravel()) / np.maximum(
        np.bincount(pid.ravel()), 1)
    crop = (mean_suit[pid] > 0.75) & ~built & (elevation > 1.0)
    uniq, compact = np.unique(np.where(crop, pid, -1), return_inverse=True)
    compact = compact.reshape(h, w) - (1 if uniq[0] == -1 else 0)
    parcel_id[crop] = compact[crop]
    n_parcels = int(parcel_id.max()) + 1

    bare = (smooth_noise(rng, (h, w), size / 20) > 1.4) & ~built & ~crop & (elevation > 0.7)

    landcover = np.full((h, w), VEGETATION, dtype=np.uint8)
    landcover[bare] = BARE
    landcover[crop] = CROPLAND
    landcover[built] = BUILT
    landcover[seasonal] = SEASONAL_WATER
    landcover[permanent] = WATER

    # Crop calendar: one or two seasons a year, keyed to the wet season.
    first_year = start.year - 1
    n_years = end.year - first_year + 2
    cal = np.full((max(n_parcels, 1), n_years, 4), -1, dtype=np.int32)
    if n_parcels:
        sow1 = wet_season_peak_doy - 95 + rng.normal(0, 12, size=(n_parcels, n_years))
        harvest1 = sow1 + rng.uniform(90, 130, size=(n_parcels, n_years))
        two = rng.random((n_parcels, n_years)) < 0.5
        sow2 = harvest1 + rng.uniform(15, 40, size=(n_parcels, n_years))
        harvest2 = sow2 + rng.uniform(80, 100, size=(n_parcels, n_years))
        cal[..., 0], cal[..., 1] = sow1, harvest1
        cal[..., 2] = np.where(two, sow2, -1)
        cal[..., 3] = np.where(two, harvest2, -1)

    texture = (1 + 0.06 * smooth_noise(rng, (h, w), 3, octaves=2)
               + 0.02 * rng.standard_normal((h, w))).astype(np.float32)
    veg_base = (0.5 + 0.06 * smooth_noise(rng, (h, w), 12)).astype(np.float32)
    veg_amp = (0.25 + 0.04 * smooth_noise(rng, (h, w), 12)).astype(np.float32)
    veg_phase = (12 * smooth_noise(rng, (h, w), 20)).astype(np.float32)
    built_albedo = np.exp(0.12 * smooth_noise(rng, (h, w), 2, octaves=2)).astype(np.float32)
    built_radar = (0.22 * np.exp(0.5 * smooth_noise(rng, (h, w), 1.5, octaves=2))
                   ).astype(np.float32)
    built_orientation = (np.pi / 2 * (0.5 + 0.5 * np.tanh(smooth_noise(rng, (h, w), size / 12)))
                         ).astype(np.float32)

    land = Landscape(
        grid=grid, start=start, end=end, wet_season_peak_doy=wet_season_peak_doy,
        landcover=landcover, elevation=elevation, texture=texture, veg_base=veg_base,
        veg_amp=veg_amp, veg_phase=veg_phase, built_albedo=built_albedo,
        built_radar=built_radar, built_orientation=built_orientation, parcel_id=parcel_id,
        crop_calendar=cal, crop_first_year=first_year,
        site_labels=np.zeros((h, w), np.int32), change_date=np.zeros((h, w), np.int32),
        built_date=np.zeros((h, w), np.int32),
    )
    _place_sites(land, n_sites, urban_score, np.random.default_rng([seed, 2]))
    return land


def _place_sites(land: Landscape, n_sites: int, urban_score: np.ndarray,
                 rng: np.random.Generator) -> None:
    """Put construction sites on the urban fringe, on land that is not water or built."""
    grid = land.grid
    h, w = land.shape
    n_days = (land.end - land.start).days + 1
    eligible = np.isin(land.landcover, (VEGETATION, CROPLAND, BARE))
    # The growth front: just outside the current urban edge, but anywhere is possible.
    weight = (np.exp(-(urban_score / 1.5) ** 2) + 0.15) * eligible
    flat = weight.ravel() / weight.sum()
    ps = grid.pixel_size
    albedo, radar = [1.0], [1.0]
    tries = 0
    while len(land.sites) < n_sites and tries < 60 * max(n_sites, 1):
        tries += 1
        centre = int(rng.choice(flat.size, p=flat))
        row, col = divmod(centre, w)
        area_m2 = math.exp(rng.uniform(math.log(0.1), math.log(5.0))) * 1e4
        aspect = rng.uniform(0.5, 2.0)
        a = math.sqrt(area_m2 * aspect)
        b = area_m2 / a
        x0 = grid.origin_x + (col + 0.5) * ps
        y0 = grid.origin_y - (row + 0.5) * ps
        deg = math.degrees(float(land.built_orientation[row, col])) + rng.choice([0, 90])
        poly = rotate(box(x0 - a / 2, y0 - b / 2, x0 + a / 2, y0 + b / 2), deg, origin=(x0, y0))
        c0 = max(int((poly.bounds[0] - grid.origin_x) // ps), 0)
        c1 = min(int((poly.bounds[2] - grid.origin_x) // ps) + 1, w)
        r0 = max(int((grid.origin_y - poly.bounds[3]) // ps), 0)
        r1 = min(int((grid.origin_y - poly.bounds[1]) // ps) + 1, h)
        if c1 <= c0 or r1 <= r0:
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1]
        inside = shapely.contains_xy(poly, grid.origin_x + (cc + 0.5) * ps,
                                     grid.origin_y - (rr + 0.5) * ps)
        n_in = int(inside.sum())
        if n_in < 5 or not poly.within(box(*grid.bounds)):
            continue
        win_ok = eligible[r0:r1, c0:c1] & (land.site_labels[r0:r1, c0:c1] == 0)
        # Keep a one-pixel gap to other sites so that they stay separate objects.
        taken = land.site_labels[max(r0 - 1, 0):r1 + 1, max(c0 - 1, 0):c1 + 1] > 0
        if (inside & win_ok).sum() < 0.9 * n_in or taken.any():
            continue
        pixels = inside & win_ok
        site_id = len(land.sites) + 1
        start_off = int(rng.uniform(0.2, 0.85) * n_days)
        start = land.start + timedelta(days=start_off)
        cleared_days = int(rng.uniform(20, 150))
        ramp_days = int(rng.uniform(15, 60))
        built = start + timedelta(days=cleared_days + ramp_days)
        # Each pixel is finished somewhere in the ramp: buildings go up one by one.
        finish = rng.uniform(0, ramp_days, size=pixels.shape)
        former = int(np.bincount(land.landcover[r0:r1, c0:c1][pixels]).argmax())
        land.site_labels[r0:r1, c0:c1][pixels] = site_id
        land.change_date[r0:r1, c0:c1][pixels] = to_epoch_days(start)
        land.built_date[r0:r1, c0:c1][pixels] = (
            to_epoch_days(start) + cleared_days + finish[pixels]).astype(np.int32)
        land.sites.append(Site(site_id=site_id, polygon_utm=poly, start=start, built=built,
                               former_landcover=former, n_pixels=int(pixels.sum()),
                               area_ha=round(poly.area / 1e4, 3)))
        albedo.append(float(rng.uniform(0.9, 1.4)))
        radar.append(float(rng.uniform(0.9, 2.2)))
    land.site_albedo = np.asarray(albedo, dtype=np.float32)
    land.site_radar = np.asarray(radar, dtype=np.float32)


@dataclass
class SurfaceState:
    """What is on the ground on one day (before any sensor effect)."""

    water: np.ndarray      # bool: open water now
    vigour: np.ndarray     # float32 0..1 green vegetation fraction (veg and crops)
    tilled: np.ndarray     # bool: cropland between harvest and regrowth (bare field)
    phase: np.ndarray      # uint8 site phase (PHASE_BEFORE/CLEARED/BUILT)
    wetness: float         # 0..1 season, drives soil moisture and clouds


def crop_vigour(land: Landscape, day: date) -> np.ndarray:
    """Green fraction per parcel on ``day``: grows after sowing, collapses at harvest."""
    n_parcels = land.crop_calendar.shape[0]
    vig = np.full(n_parcels, 0.08, dtype=np.float32)
    for year in (day.year - 1, day.year):
        yi = year - land.crop_first_year
        if yi < 0 or yi >= land.crop_calendar.shape[1]:
            continue
        d = (day - date(year, 1, 1)).days + 1
        for s_col, h_col in ((0, 1), (2, 3)):
            sow = land.crop_calendar[:, yi, s_col]
            harvest = land.crop_calendar[:, yi, h_col]
            active = (sow >= 0) & (d >= sow) & (d < harvest)
            growth = 0.08 + 0.8 / (1 + np.exp(-(d - sow - 40) / 9.0))
            vig = np.where(active, np.maximum(vig, growth), vig)
            # Stubble and weeds come back slowly after the harvest.
            after = (sow >= 0) & (d >= harvest) & (d < harvest + 150)
            weeds = 0.08 + 0.12 * np.clip((d - harvest) / 150.0, 0, 1)
            vig = np.where(after & (vig < weeds), weeds, vig)
    return vig.astype(np.float32)


def surface_at(land: Landscape, day: date, seed: int) -> SurfaceState:
    doy = day.timetuple().tm_yday
    wet = float(seasonal_wetness(doy, land.wet_season_peak_doy))
    level = water_level_at(day, land.wet_season_peak_doy, seed)
    water = land.elevation < level
    veg_season = seasonal_wetness(doy - 25 - land.veg_phase, land.wet_season_peak_doy)
    vigour = np.clip(land.veg_base + land.veg_amp * (2 * veg_season - 1), 0.05, 0.95)
    crop = land.parcel_id >= 0
    tilled = np.zeros(land.shape, dtype=bool)
    if crop.any():
        cv = crop_vigour(land, day)[land.parcel_id[crop]]
        vigour[crop] = cv
        tilled[crop] = cv < 0.25
    today = to_epoch_days(day)
    phase = np.zeros(land.shape, dtype=np.uint8)
    in_site = land.site_labels > 0
    phase[in_site & (land.change_date <= today)] = PHASE_CLEARED
    phase[in_site & (land.built_date <= today)] = PHASE_BUILT
    return SurfaceState(water=water, vigour=vigour.astype(np.float32), tilled=tilled,
                        phase=phase, wetness=wet)
