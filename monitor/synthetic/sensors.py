"""What Sentinel-2 and Sentinel-1 see of a synthetic ``Landscape`` on each acquisition.

Pure numpy. Sentinel-2 L2A: surface reflectance from a few end-members mixed per pixel,
a small residual of atmosphere and illumination per scene, clouds with thin edges and
their offset shadows, cirrus, sensor noise, and a scene classification (SCL) at 20 m that
is good but not perfect (very thin cloud edges are left unflagged, as in the real SCL).
Sentinel-1 RTC: gamma0 in linear power; double bounce of built-up that depends on the
orbit's look direction, wind-roughened water, soil moisture, vegetation volume, and
multiplicative gamma speckle (ENL 4.5).

Every scene draws its randomness from ``(seed, sensor, index)`` alone, so scenes can be
simulated in any order or in parallel and still give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np

from monitor.synthetic.landscape import (
    BARE,
    BUILT,
    PHASE_BUILT,
    PHASE_CLEARED,
    SEASONAL_WATER,
    Landscape,
    seasonal_wetness,
    smooth_noise,
    surface_at,
)
from monitor.synthetic.params import BOA_OFFSET_SINCE, ArchiveParams

S2_BANDS_10M = ("B02", "B03", "B04", "B08")
S2_BANDS_20M = ("B11", "B12")
S2_BAND_ORDER = S2_BANDS_10M + S2_BANDS_20M
BOA_ADD_OFFSET = 1000
S1_NODATA = -32768.0
S1_ENL = 4.5
S1B_END = date(2021, 12, 23)  # Sentinel-1B stopped acquiring on this day

# Surface reflectance end-members, bands B02 B03 B04 B08 B11 B12.
ENDMEMBERS = {
    "water": (0.055, 0.065, 0.045, 0.025, 0.012, 0.007),
    "built": (0.090, 0.100, 0.115, 0.190, 0.230, 0.200),
    "canopy": (0.025, 0.060, 0.030, 0.420, 0.190, 0.085),
    "dry": (0.070, 0.095, 0.125, 0.230, 0.300, 0.230),
    "tilled": (0.075, 0.100, 0.130, 0.210, 0.290, 0.240),
    "bare": (0.100, 0.130, 0.170, 0.250, 0.330, 0.270),
    "cleared": (0.110, 0.145, 0.200, 0.270, 0.360, 0.300),
    "newbuilt": (0.120, 0.130, 0.140, 0.210, 0.250, 0.215),
    "wetsoil": (0.050, 0.070, 0.085, 0.160, 0.190, 0.130),
}
_EM_NAMES = tuple(ENDMEMBERS)
_EM = np.asarray([ENDMEMBERS[n] for n in _EM_NAMES], dtype=np.float32).T  # (6, n_em)
_EMI = {n: i for i, n in enumerate(_EM_NAMES)}
CLOUD_SPECTRUM = np.asarray((0.50, 0.50, 0.50, 0.52, 0.38, 0.26), np.float32)
CIRRUS_SPECTRUM = np.asarray((0.12, 0.10, 0.09, 0.08, 0.04, 0.02), np.float32)
HAZE_SPECTRUM = np.asarray((0.015, 0.011, 0.008, 0.005, 0.002, 0.001), np.float32)

# Scene classification codes of the Sentinel-2 L2A SCL band.
SCL_NODATA, SCL_SHADOW, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10


@dataclass(frozen=True)
class S2Acquisition:
    index: int
    platform: str           # "sentinel-2a" | "sentinel-2b"
    time: datetime          # UTC
    relative_orbit: int
    cloud_fraction: float   # 0..1, the drawn cloud cover
    latency: timedelta      # acquisition -> published in the catalogue
    sun_elevation: float
    sun_azimuth: float
    boa_offset: bool
    processing_baseline: str


@dataclass(frozen=True)
class S1Acquisition:
    index: int
    platform: str           # "SENTINEL-1A" | "SENTINEL-1B"
    time: datetime
    orbit_state: str        # "ascending" | "descending"
    relative_orbit: int
    absolute_orbit: int
    incidence_deg: float
    look_azimuth_deg: float
    nodata_side: str | None   # "west" | "east" | None: the swath edge cuts the city
    nodata_fraction: float
    latency: timedelta


@dataclass
class S2Scene:
    bands: dict[str, np.ndarray]   # uint16 DN: B02 B03 B04 B08 at 10 m; B11 B12 at 20 m
    scl: np.ndarray                # uint8 at 20 m
    percentages: dict[str, float]  # s2:*_percentage and eo:cloud_cover from the SCL


@dataclass
class S1Scene:
    vv: np.ndarray   # float32 linear gamma0, NaN where no data
    vh: np.ndarray


def processing_baseline_for(day: date) -> str:
    """The Sentinel-2 processing baseline that was live on ``day`` (close to history)."""
    table = ((date(2022, 12, 13), "05.09"), (date(2022, 1, 25), "04.00"),
             (date(2021, 6, 30), "03.01"), (date(2021, 1, 26), "03.00"),
             (date(2020, 1, 28), "02.14"), (date(2019, 11, 26), "02.13"),
             (date(2019, 1, 1), "02.11"))
    for since, baseline in table:
        if day >= since:
            return baseline
    return "02.09"


def solar_position(day: date, lat: float, local_hour: float) -> tuple[float, float]:
    """Approximate sun elevation and azimuth (degrees) at a local solar hour."""
    doy = day.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    hour_angle = math.radians(15.0 * (local_hour - 12.0))
    phi = math.radians(lat)
    sin_el = (math.sin(phi) * math.sin(decl)
              + math.cos(phi) * math.cos(decl) * math.cos(hour_angle))
    el = math.asin(max(-1.0, min(1.0, sin_el)))
    cos_az = (math.sin(decl) - math.sin(el) * math.sin(phi)) / max(
        math.cos(el) * math.cos(phi), 1e-9)
    az = math.degrees(math.acos(max(-1.0, min(1.0, cos_az))))
    if hour_angle > 0:
        az = 360.0 - az
    return math.degrees(el), az


def _latency(rng: np.random.Generator, median_h: float, late_p: float,
             late_days: tuple[float, float]) -> timedelta:
    hours = float(rng.lognormal(math.log(median_h), 0.5))
    if rng.random() < late_p:
        hours += 24.0 * float(rng.uniform(*late_days))
    return timedelta(hours=round(hours, 3))


def plan_s2_acquisitions(params: ArchiveParams) -> list[S2Acquisition]:
    """One pass every ``s2_revisit_days`` (S2A and S2B alternate), 10:30 local solar time."""
    rng = np.random.default_rng([params.seed, 3])
    first = params.start + timedelta(days=int(rng.integers(0, params.s2_revisit_days)))
    utc_hour = (10.5 - params.lon / 15.0) % 24
    relative_orbit = int(rng.integers(1, 144))
    out = []
    day, index = first, 0
    while day <= params.end:
        wet = float(seasonal_wetness(day.timetuple().tm_yday, params.wet_season_peak_doy))
        u = rng.random()
        p_overcast, p_clear = 0.04 + 0.30 * wet, 0.12 + 0.38 * (1 - wet)
        if u < p_overcast:
            cloud = 1.0
        elif u < p_overcast + p_clear:
            cloud = 0.0
        else:
            cloud = float(np.clip(rng.beta(1.0 + 2.0 * wet, 2.2), 0.02, 0.95))
        t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            hours=utc_hour, seconds=float(rng.uniform(0, 20)))
        el, az = solar_position(day, params.lat, 10.5)
        out.append(S2Acquisition(
            index=index, platform="sentinel-2a" if index % 2 == 0 else "sentinel-2b",
            time=t, relative_orbit=relative_orbit, cloud_fraction=cloud,
            latency=_latency(rng, 3.0, 0.05, (1, 6)), sun_elevation=round(el, 4),
            sun_azimuth=round(az, 4), boa_offset=params.boa_offset and day >= BOA_OFFSET_SINCE,
            processing_baseline=processing_baseline_for(day)))
        day += timedelta(days=params.s2_revisit_days)
        index += 1
    return out


def _absolute_orbit(t: datetime, relative_orbit: int, platform: str) -> int:
    """An absolute orbit number near the real count that maps to ``relative_orbit``."""
    ref = datetime(2024, 4, 19, tzinfo=UTC)  # S1A absolute orbit 53498 (a real item)
    approx = 53498 + (t - ref).total_seconds() / 86400.0 * 175 / 12
    shift = 73 if platform == "SENTINEL-1A" else 27
    base = int(approx)
    for k in range(0, 175):
        cand = base + k
        if ((cand - shift) % 175) + 1 == relative_orbit:
            return cand
    return base


@dataclass(frozen=True)
class _Track:
    state: str
    utc_hour: float
    look_azimuth: float
    incidence: float
    relative_orbit: int
    first: int


def plan_s1_acquisitions(params: ArchiveParams) -> list[S1Acquisition]:
    """An ascending and a descending track, each every ``s1_repeat_days``.

    Ascending passes are at about 18:00 local solar time, descending at 06:00. Until
    Sentinel-1B failed (2021-12-23) the descending track is flown by S1B.
    """
    rng = np.random.default_rng([params.seed, 4])
    tracks = []
    for state, local_hour, look_az, inc in (("ascending", 18.0, 78.0, 36.5),
                                            ("descending", 6.0, 282.0, 41.0)):
        tracks.append(_Track(state=state, utc_hour=(local_hour - params.lon / 15.0) % 24,
                             look_azimuth=look_az + float(rng.normal(0, 1)),
                             incidence=inc + float(rng.normal(0, 1.5)),
                             relative_orbit=int(rng.integers(1, 176)),
                             first=int(rng.integers(0, params.s1_repeat_days))))
    if tracks[0].relative_orbit == tracks[1].relative_orbit:
        tracks[1] = replace(tracks[1], relative_orbit=tracks[1].relative_orbit % 175 + 1)
    raw = []
    for tr in tracks:
        day = params.start + timedelta(days=tr.first)
        while day <= params.end:
            raw.append((day, tr))
            day += timedelta(days=params.s1_repeat_days)
    raw.sort(key=lambda x: (x[0], x[1].state))
    out = []
    for index, (day, tr) in enumerate(raw):
        platform = ("SENTINEL-1B" if tr.state == "descending" and day < S1B_END
                    else "SENTINEL-1A")
        t = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            hours=tr.utc_hour, seconds=float(rng.uniform(0, 30)))
        # The descending swath edge runs close to the city: some scenes miss a strip.
        edge = tr.state == "descending" and rng.random() < 0.25
        out.append(S1Acquisition(
            index=index, platform=platform, time=t, orbit_state=tr.state,
            relative_orbit=tr.relative_orbit,
            absolute_orbit=_absolute_orbit(t, tr.relative_orbit, platform),
            incidence_deg=round(tr.incidence, 3), look_azimuth_deg=round(tr.look_azimuth, 3),
            nodata_side=("west" if rng.random() < 0.5 else "east") if edge else None,
            nodata_fraction=float(rng.uniform(0.05, 0.35)) if edge else 0.0,
            latency=_latency(rng, 10.0, 0.08, (2, 10))))
    return out


def _block_mean(a: np.ndarray) -> np.ndarray:
    """2 x 2 mean (10 m -> 20 m); an odd last row/column is repeated."""
    h, w = a.shape[-2:]
    if h % 2 or w % 2:
        a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    return 0.25 * (a[..., ::2, ::2] + a[..., 1::2, ::2] + a[..., ::2, 1::2] + a[..., 1::2, 1::2])


def _upsample2(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """20 m -> 10 m by repetition, cropped to ``shape``."""
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]


def surface_reflectance(land: Landscape, day: date, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(6, h, w) float32 surface reflectance on ``day`` and the open-water mask."""
    st = surface_at(land, day, seed)
    lc = land.landcover
    h, w = land.shape
    ia = np.full((h, w), _EMI["canopy"], dtype=np.intp)
    ib = np.full((h, w), _EMI["dry"], dtype=np.intp)
    frac = st.vigour.copy()
    bright = land.texture.copy()
    crop = land.parcel_id >= 0
    ib[crop] = _EMI["tilled"]
    wetland = lc == SEASONAL_WATER
    ib[wetland] = _EMI["wetsoil"]
    frac[wetland] *= 0.5
    for mask, name in ((lc == BARE, "bare"), (lc == BUILT, "built")):
        ia[mask], frac[mask] = _EMI[name], 1.0
    bright[lc == BUILT] *= land.built_albedo[lc == BUILT]
    cleared = st.phase == PHASE_CLEARED
    ia[cleared], frac[cleared] = _EMI["cleared"], 1.0
    new = st.phase == PHASE_BUILT
    ia[new], frac[new] = _EMI["newbuilt"], 1.0
    bright[new] *= land.site_albedo[land.site_labels[new]] * land.built_albedo[new]
    ia[st.water], frac[st.water] = _EMI["water"], 1.0
    bright[st.water] = 1.0
    refl = _EM[:, ia] * frac + _EM[:, ib] * (1.0 - frac)
    refl *= bright
    return refl.astype(np.float32), st.water


def simulate_s2(land: Landscape, acq: S2Acquisition, seed: int) -> S2Scene:
    rng = np.random.default_rng([seed, 5, acq.index])
    h, w = land.shape
    refl, water = surface_reflectance(land, acq.time.date(), seed)

    # Residual illumination/atmosphere after L2A correction: a gain and a smooth haze.
    gain = float(rng.normal(1.0, 0.035))
    aod = float(rng.lognormal(math.log(0.1), 0.6))
    haze = (aod / 0.1) * np.clip(1 + 0.4 * smooth_noise(rng, (h, w), max(h, w) / 3, 2), 0, None)
    toa = refl * gain + HAZE_SPECTRUM[:, None, None] * haze

    # Clouds on a padded 20 m field so that shadows can come from clouds outside the
    # city; 20 m is the resolution of the SCL that flags them anyway.
    pad = 60
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    opacity_full = np.zeros((h2 + 2 * pad, w2 + 2 * pad), np.float32)
    if acq.cloud_fraction > 0:
        n = smooth_noise(rng, opacity_full.shape, 28, octaves=3)
        thr = float(np.quantile(n, 1 - acq.cloud_fraction)) if acq.cloud_fraction < 1 else -9
        opacity_full = np.clip(0.35 + (n - thr) / 0.5, 0, 1)
        if acq.cloud_fraction >= 1:
            opacity_full = np.clip(opacity_full + 0.5, 0, 1)
    height_m = float(rng.uniform(600, 2500))
    length_px = min(height_m / math.tan(math.radians(max(acq.sun_elevation, 20))) / 20, pad)
    shadow_dir = math.radians(acq.sun_azimuth + 180.0)
    dc = int(round(length_px * math.sin(shadow_dir)))    # east = +column
    dr = int(round(-length_px * math.cos(shadow_dir)))   # north = -row
    o20 = opacity_full[pad:pad + h2, pad:pad + w2]
    caster20 = opacity_full[pad - dr:pad - dr + h2, pad - dc:pad - dc + w2]
    opacity = _upsample2(o20, (h, w))
    shadow = 1.0 - 0.65 * _upsample2(caster20, (h, w))
    cirrus = np.zeros((h, w), np.float32)
    if rng.random() < 0.15:
        cirrus = (float(rng.uniform(0.05, 0.25))
                  * np.clip(1 + 0.5 * smooth_noise(rng, (h, w), 150, 2), 0, None)).astype(np.float32)
    cloud = CLOUD_SPECTRUM[:, None, None] * float(rng.uniform(0.85, 1.1))
    obs = toa * shadow * (1 - opacity) + cloud * opacity + CIRRUS_SPECTRUM[:, None, None] * cirrus
    obs += rng.standard_normal(obs.shape, dtype=np.float32) * (0.0015 + 0.005 * obs)

    offset = BOA_ADD_OFFSET if acq.boa_offset else 0
    bands: dict[str, np.ndarray] = {}
    for i, name in enumerate(S2_BAND_ORDER):
        band = obs[i] if name in S2_BANDS_10M else _block_mean(obs[i])
        bands[name] = np.clip(np.rint(band * 10000) + offset, 1, 65535).astype(np.uint16)

    # SCL at 20 m from what the processor can see.
    c20 = _block_mean(cirrus)
    sh20 = 0.65 * caster20 * (1 - o20)
    w20 = _block_mean(water.astype(np.float32))
    nir, red = _block_mean(obs[3]), _block_mean(obs[2])
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    scl = np.full(o20.shape, SCL_NOT_VEGETATED, dtype=np.uint8)
    scl[ndvi > 0.4] = SCL_VEGETATION
    scl[w20 > 0.5] = SCL_WATER
    scl[sh20 > 0.2] = SCL_SHADOW
    scl[(c20 > 0.08) & (o20 < 0.3)] = SCL_CIRRUS
    scl[o20 >= 0.3] = SCL_CLOUD_MEDIUM
    scl[o20 >= 0.65] = SCL_CLOUD_HIGH
    n_px = scl.size
    count = np.bincount(scl.ravel(), minlength=12) / n_px * 100
    pct = {
        "eo:cloud_cover": round(float(count[8] + count[9] + count[10]), 6),
        "s2:nodata_pixel_percentage": 0.0,
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
    return S2Scene(bands=bands, scl=scl, percentages=pct)


def _orientation_factor(orientation: np.ndarray, look_azimuth_deg: float) -> np.ndarray:
    """Double bounce is strongest when walls face the radar (period 90 degrees), mean 1."""
    delta = orientation - math.radians(look_azimuth_deg)
    return (0.4 + 1.2 * np.cos(2 * delta) ** 2).astype(np.float32)


def simulate_s1(land: Landscape, acq: S1Acquisition, seed: int) -> S1Scene:
    rng = np.random.default_rng([seed, 6, acq.index])
    h, w = land.shape
    day = acq.time.date()
    st = surface_at(land, day, seed)
    lc = land.landcover
    wet = st.wetness
    rain = float(rng.uniform(0.1, 0.4)) if rng.random() < 0.2 + 0.4 * wet else 0.0
    moisture = float(np.clip(0.15 + 0.45 * wet + rain + rng.normal(0, 0.05), 0, 1))
    wind = float(np.clip(rng.lognormal(0, 0.6), 0.3, 8))
    # Distributed targets get darker with a steeper incidence angle.
    geometry = (math.cos(math.radians(acq.incidence_deg)) / math.cos(math.radians(39.0))) ** 1.5

    vig = st.vigour
    vv = 0.025 + 0.075 * vig + 0.03 * moisture
    vh = 0.004 + 0.028 * vig + 0.004 * moisture
    bare = (lc == BARE) | st.tilled
    vv = np.where(bare, 0.015 + 0.05 * moisture, vv)
    vh = np.where(bare, 0.002 + 0.006 * moisture, vh)
    vv = np.where(lc == SEASONAL_WATER, vv + 0.02, vv)
    vv = vv * geometry
    vh = vh * geometry
    orient = _orientation_factor(land.built_orientation, acq.look_azimuth_deg)
    old = lc == BUILT
    vv = np.where(old, land.built_radar * orient, vv)
    vh = np.where(old, 0.12 * land.built_radar * (0.7 + 0.3 * orient), vh)
    cleared = st.phase == PHASE_CLEARED
    vv = np.where(cleared, (0.05 + 0.04 * moisture) * geometry, vv)
    vh = np.where(cleared, (0.006 + 0.004 * moisture) * geometry, vh)
    new = st.phase == PHASE_BUILT
    new_base = land.built_radar * land.site_radar[land.site_labels]
    vv = np.where(new, new_base * orient, vv)
    vh = np.where(new, 0.12 * new_base * (0.7 + 0.3 * orient), vh)
    vv = np.where(st.water, 0.004 * wind, vv)
    vh = np.where(st.water, 0.0007 * wind, vh)

    texture = land.texture ** 2
    vv = vv * texture * rng.gamma(S1_ENL, 1 / S1_ENL, size=(h, w))
    vh = vh * texture * rng.gamma(S1_ENL, 1 / S1_ENL, size=(h, w))
    vv, vh = vv.astype(np.float32), vh.astype(np.float32)
    if acq.nodata_side is not None:
        # The swath edge is slightly slanted across the city.
        rows = np.linspace(-0.03, 0.03, h)[:, None]
        x = (np.arange(w)[None, :] + 0.5) / w
        cut = acq.nodata_fraction + rows
        strip = x < cut if acq.nodata_side == "west" else x > 1 - cut
        vv[strip] = np.nan
        vh[strip] = np.nan
    return S1Scene(vv=vv, vh=vh)
