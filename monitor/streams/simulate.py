"""A dense scene stream from one labelled city's two real acquisitions (pure numpy).

The real data gives two Sentinel-2 images (``date_1``, ``date_2``), a change label, and
for most cities Sentinel-1 VV 3-month means before ``date_1`` and after ``date_2``. The
stream fills the time around and between them the way a monitoring system would see it:

* **Sites**: every 8-connected component of the change label is one site; it changes on
  one date drawn uniformly between the two real acquisitions (``change_margin_days``
  away from both). Before that date its pixels show the first image, after it the second.
* **Unchanged land drifts between the two real images like seasons**: its surface is
  ``img1 + w(t) (img2 - img1)`` with ``w`` a cosine that is 0 on ``date_1``, 1 on
  ``date_2`` and has a period near a year (an odd number of half-cycles in between), so
  every real difference between the two acquisitions that is *not* urban change
  (phenology, harvests, water, illumination, processing) comes and goes as a confuser.
* **Sentinel-2** every ``s2_revisit_days``: a per-scene gain and smooth haze, sensor
  noise, coherent clouds with thin edges and displaced shadows, thin cirrus, and a scene
  classification (SCL) at 20 m that flags them (missing the thinnest edges, as the real
  one does). No data outside the real image footprint.
* **Sentinel-1** every ``s1_repeat_days`` per real relative orbit: the 3-month mean of
  the date (drifting like the optical surface, switching on the site's date) in linear
  gamma0 power with multiplicative gamma speckle (ENL 4.5) and a per-scene calibration
  wobble.

Every scene's randomness depends only on (seed, sensor, orbit, index), so scenes can be
rendered in any order or in parallel and give the same bytes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from scipy import ndimage

from monitor.synthetic.landscape import smooth_noise

EPOCH_1970 = date(1970, 1, 1)
S1_ENL = 4.5
S1_NODATA = -32768.0
# Spectra of the ten stream bands (blue green red rededge1-3 nir nir08 swir16 swir22).
CLOUD_SPECTRUM = np.asarray((0.50, 0.50, 0.50, 0.51, 0.52, 0.52, 0.52, 0.52, 0.38, 0.26),
                            np.float32)
CIRRUS_SPECTRUM = np.asarray((0.12, 0.10, 0.09, 0.085, 0.08, 0.08, 0.08, 0.08, 0.04, 0.02),
                             np.float32)
HAZE_SPECTRUM = np.asarray((0.015, 0.011, 0.008, 0.007, 0.006, 0.0055, 0.005, 0.0045, 0.002,
                            0.001), np.float32)
BAND_20M = (False, False, False, True, True, True, False, True, True, True)
SCL_NODATA, SCL_SHADOW, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class StreamParams:
    """Everything that shapes a stream besides the real data (hashed into the archive)."""

    seed: int = 0
    baseline_days: int = 180       # stream starts this long before date_1
    after_days: int = 150          # ... and ends this long after date_2
    s2_revisit_days: int = 5
    s1_repeat_days: int = 12
    change_margin_days: int = 15   # site dates lie in [date_1 + m, date_2 - m]
    p_overcast: float = 0.15       # share of S2 scenes fully overcast
    p_clear: float = 0.30          # ... and fully clear; the rest partly cloudy

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


def to_epoch_days(day: date) -> int:
    return (day - EPOCH_1970).days


def drift_weight(day: date, date_1: date, date_2: date) -> float:
    """0 on ``date_1``, 1 on ``date_2``, a cosine with a period near one year."""
    span = (date_2 - date_1).days
    # the odd number of half-cycles nearest to span / half a year
    half_cycles = 2 * max(0, int(round((span / 182.6 - 1) / 2))) + 1
    phase = math.pi * (day - date_1).days * half_cycles / span
    return 0.5 - 0.5 * math.cos(phase)


@dataclass(frozen=True)
class Sites:
    labels: np.ndarray        # (H, W) int32 site id, 0 = none
    change_day: np.ndarray    # (n_sites + 1,) int32 epoch days (index 0 unused = 0)

    @property
    def n_sites(self) -> int:
        return int(self.change_day.size - 1)

    def change_date_raster(self) -> np.ndarray:
        return self.change_day[self.labels].astype(np.int32)


def draw_sites(change: np.ndarray, date_1: date, date_2: date, params: StreamParams) -> Sites:
    """One site per 8-connected component of the change label, each with its date."""
    labels, n = ndimage.label(change, structure=_EIGHT)
    rng = np.random.default_rng([params.seed, 1])
    lo = to_epoch_days(date_1) + params.change_margin_days
    hi = to_epoch_days(date_2) - params.change_margin_days
    if hi <= lo:
        lo = hi = (to_epoch_days(date_1) + to_epoch_days(date_2)) // 2
    days = np.zeros(n + 1, dtype=np.int32)
    days[1:] = rng.integers(lo, hi + 1, size=n)
    return Sites(labels=labels.astype(np.int32), change_day=days)


@dataclass(frozen=True)
class S2Plan:
    index: int
    time: datetime
    cloud_fraction: float
    latency: timedelta
    platform: str


@dataclass(frozen=True)
class S1Plan:
    index: int
    orbit: int
    orbit_state: str
    time: datetime
    latency: timedelta
    platform: str


def _latency(rng: np.random.Generator, median_h: float, late_p: float,
             late_days: tuple[float, float]) -> timedelta:
    hours = float(rng.lognormal(math.log(median_h), 0.5))
    if rng.random() < late_p:
        hours += 24.0 * float(rng.uniform(*late_days))
    return timedelta(hours=round(hours, 3))


def stream_period(date_1: date, date_2: date, params: StreamParams) -> tuple[date, date]:
    return (date_1 - timedelta(days=params.baseline_days),
            date_2 + timedelta(days=params.after_days))


def plan_s2(date_1: date, date_2: date, lon: float, params: StreamParams) -> list[S2Plan]:
    """S2 passes every ``s2_revisit_days``, aligned so that one falls on ``date_1``."""
    rng = np.random.default_rng([params.seed, 3])
    start, end = stream_period(date_1, date_2, params)
    step = params.s2_revisit_days
    first = date_1 - timedelta(days=step * ((date_1 - start).days // step))
    utc_hour = (10.5 - lon / 15.0) % 24
    out, day, index = [], first, 0
    while day <= end:
        u = rng.random()
        if u < params.p_overcast:
            cloud = 1.0
        elif u < params.p_overcast + params.p_clear:
            cloud = 0.0
        else:
            cloud = float(np.clip(rng.beta(1.3, 2.2), 0.02, 0.95))
        t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            hours=utc_hour, seconds=float(rng.uniform(0, 20)))
        out.append(S2Plan(index=index, time=t, cloud_fraction=cloud,
                          latency=_latency(rng, 3.0, 0.05, (1, 6)),
                          platform="sentinel-2a" if index % 2 == 0 else "sentinel-2b"))
        day += timedelta(days=step)
        index += 1
    return out


def plan_s1(orbits: list[int], date_1: date, date_2: date, lon: float,
            params: StreamParams) -> list[S1Plan]:
    """Per relative orbit a pass every ``s1_repeat_days``, orbits on alternating tracks."""
    start, end = stream_period(date_1, date_2, params)
    out: list[S1Plan] = []
    index = 0
    for k, orbit in enumerate(sorted(orbits)):
        rng = np.random.default_rng([params.seed, 4, orbit])
        state = "ascending" if k % 2 == 0 else "descending"
        local = 18.0 if state == "ascending" else 6.0
        utc_hour = (local - lon / 15.0) % 24
        day = start + timedelta(days=int(rng.integers(0, params.s1_repeat_days)))
        while day <= end:
            t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
                hours=utc_hour, seconds=float(rng.uniform(0, 30)))
            out.append(S1Plan(index=index, orbit=orbit, orbit_state=state, time=t,
                              latency=_latency(rng, 10.0, 0.08, (2, 10)),
                              platform="SENTINEL-1A" if index % 2 == 0 else "SENTINEL-1B"))
            index += 1
            day += timedelta(days=params.s1_repeat_days)
    return sorted(out, key=lambda p: p.time)


def surface_at(img_1: np.ndarray, img_2: np.ndarray, sites: Sites, day: date, date_1: date,
               date_2: date) -> np.ndarray:
    """(B, H, W) surface on ``day``: changed sites switch on their date, the rest drifts."""
    w = np.float32(drift_weight(day, date_1, date_2))
    out = img_1 + w * (img_2 - img_1)
    changed_by_now = sites.change_day[sites.labels] <= to_epoch_days(day)
    changed_by_now &= sites.labels > 0
    before = (sites.labels > 0) & ~changed_by_now
    out[:, changed_by_now] = img_2[:, changed_by_now]
    out[:, before] = img_1[:, before]
    return out.astype(np.float32)


def block_mean(a: np.ndarray) -> np.ndarray:
    """2 x 2 mean (10 m -> 20 m); an odd last row/column is repeated; NaN-aware."""
    h, w = a.shape[-2:]
    if h % 2 or w % 2:
        a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    stack = np.stack([a[..., ::2, ::2], a[..., 1::2, ::2], a[..., ::2, 1::2], a[..., 1::2, 1::2]])
    if not np.isnan(stack).any():
        return stack.mean(axis=0)
    with warnings.catch_warnings():  # all four NaN -> NaN, as intended: no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def _upsample2(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]


@dataclass
class S2Render:
    dn_10m: dict[int, np.ndarray]   # band index -> uint16 DN at 10 m (10 m bands)
    dn_20m: dict[int, np.ndarray]   # band index -> uint16 DN at 20 m (20 m bands)
    scl: np.ndarray                 # uint8 at 20 m
    percentages: dict[str, float]


def render_s2(surface: np.ndarray, inside: np.ndarray, plan: S2Plan, seed: int,
              sun_azimuth: float = 150.0, sun_elevation: float = 45.0) -> S2Render:
    """One S2 L2A scene of ``surface`` (B, H, W reflectance): DN, SCL and percentages."""
    rng = np.random.default_rng([seed, 5, plan.index])
    n_band, h, w = surface.shape
    gain = float(rng.normal(1.0, 0.03)) * np.asarray(rng.normal(1.0, 0.01, n_band), dtype=np.float32)
    aod = float(rng.lognormal(math.log(0.1), 0.6))
    haze = (aod / 0.1) * np.clip(1 + 0.4 * smooth_noise(rng, (h, w), max(h, w) / 3, 2), 0, None)
    toa = surface * gain[:, None, None] + HAZE_SPECTRUM[:n_band, None, None] * haze

    pad = 60
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    opacity_full = np.zeros((h2 + 2 * pad, w2 + 2 * pad), np.float32)
    if plan.cloud_fraction > 0:
        noise = smooth_noise(rng, opacity_full.shape, 28, octaves=3)
        thr = (float(np.quantile(noise, 1 - plan.cloud_fraction)) if plan.cloud_fraction < 1
               else -9.0)
        opacity_full = np.clip(0.35 + (noise - thr) / 0.5, 0, 1)
        if plan.cloud_fraction >= 1:
            opacity_full = np.clip(opacity_full + 0.5, 0, 1)
    height_m = float(rng.uniform(600, 2500))
    length_px = min(height_m / math.tan(math.radians(max(sun_elevation, 20))) / 20, pad)
    shadow_dir = math.radians(sun_azimuth + 180.0)
    dc = int(round(length_px * math.sin(shadow_dir)))
    dr = int(round(-length_px * math.cos(shadow_dir)))
    o20 = opacity_full[pad:pad + h2, pad:pad + w2]
    caster20 = opacity_full[pad - dr:pad - dr + h2, pad - dc:pad - dc + w2]
    opacity = _upsample2(o20, (h, w))
    shadow = 1.0 - 0.65 * _upsample2(caster20, (h, w))
    cirrus = np.zeros((h, w), np.float32)
    if rng.random() < 0.15:
        cirrus = (float(rng.uniform(0.05, 0.25))
                  * np.clip(1 + 0.5 * smooth_noise(rng, (h, w), 150, 2), 0, None)
                  ).astype(np.float32)
    cloud = CLOUD_SPECTRUM[:n_band, None, None] * float(rng.uniform(0.85, 1.1))
    obs = (toa * shadow * (1 - opacity) + cloud * opacity
           + CIRRUS_SPECTRUM[:n_band, None, None] * cirrus)
    obs = obs + rng.standard_normal(obs.shape, dtype=np.float32) * (0.0015 + 0.005 * np.abs(obs))
    obs[:, ~inside] = np.nan

    dn_10m: dict[int, np.ndarray] = {}
    dn_20m: dict[int, np.ndarray] = {}
    for b in range(n_band):
        band = block_mean(obs[b]) if BAND_20M[b] else obs[b]
        dn = np.where(np.isfinite(band), np.clip(np.rint(np.nan_to_num(band) * 10000), 1, 65535), 0)
        (dn_20m if BAND_20M[b] else dn_10m)[b] = dn.astype(np.uint16)

    inside20 = block_mean(inside.astype(np.float32)) >= 0.5
    c20 = block_mean(cirrus)
    sh20 = 0.65 * caster20 * (1 - o20)
    green, red, nir, swir = (block_mean(np.nan_to_num(obs[i])) for i in (1, 2, 6, 8))
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    mndwi = (green - swir) / np.maximum(green + swir, 1e-6)
    scl = np.full(o20.shape, SCL_NOT_VEGETATED, dtype=np.uint8)
    scl[ndvi > 0.4] = SCL_VEGETATION
    scl[(mndwi > 0.2) & (ndvi < 0.1)] = SCL_WATER
    scl[sh20 > 0.2] = SCL_SHADOW
    scl[(c20 > 0.08) & (o20 < 0.3)] = SCL_CIRRUS
    scl[o20 >= 0.3] = SCL_CLOUD_MEDIUM
    scl[o20 >= 0.65] = SCL_CLOUD_HIGH
    scl[~inside20] = SCL_NODATA
    count = np.bincount(scl.ravel(), minlength=12) / scl.size * 100
    pct = {
        "eo:cloud_cover": round(float(count[8] + count[9] + count[10]), 6),
        "s2:nodata_pixel_percentage": round(float(count[0]), 6),
        "s2:saturated_defective_pixel_percentage": 0.0,
        "s2:dark_features_percentage": round(float(count[2]), 6),
        "s2:cloud_shadow_percentage": round(float(count[3]), 6),
        "s2:vegetation_percentage": round(float(count[4]), 6),
        "s2:not_vegetated_percentage": round(float(count[5]), 6),
        "s2:water_percentage": round(float(count[6]), 6),
        "s2:unclassified_percentage": round(float(count[7]), 6),
        "s2:medium_proba_clouds_percentage": round(float(count[8]), 6),
        "s2:high_proba_clouds_percentage": round(float(count[9]), 6),
        "s2:thin_cirrus_percentage": round(float(count[10]), 6),
        "s2:snow_ice_percentage": 0.0,
    }
    return S2Render(dn_10m=dn_10m, dn_20m=dn_20m, scl=scl, percentages=pct)


def s1_mean_at(mean_1: np.ndarray, mean_2: np.ndarray, sites: Sites, day: date, date_1: date,
               date_2: date) -> np.ndarray:
    """The orbit's VV 3-month mean (scaled dB) on ``day``, drifting and switching like S2."""
    return surface_at(mean_1[None], mean_2[None], sites, day, date_1, date_2)[0]


def render_s1(mean_scaled_db: np.ndarray, plan: S1Plan, seed: int) -> np.ndarray:
    """One S1 RTC VV scene: linear gamma0 power with speckle; NaN where no data."""
    rng = np.random.default_rng([seed, 6, plan.orbit, plan.index])
    db = np.clip(mean_scaled_db, 0.0, 1.0) * 30.0 - 25.0 + float(rng.normal(0.0, 0.3))
    linear = np.power(10.0, db / 10.0).astype(np.float32)
    speckle = rng.gamma(S1_ENL, 1.0 / S1_ENL, size=linear.shape).astype(np.float32)
    out = linear * speckle
    out[~np.isfinite(mean_scaled_db)] = np.nan
    return out
