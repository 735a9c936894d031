"""Parameters of a synthetic city archive, and the hash that makes generation cacheable."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from datetime import date

import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, box

from monitor.domain.grid import CityGrid, utm_epsg_for
from monitor.errors import ConfigError

# Bump whenever the physics or the file layout changes: cached archives are then rebuilt.
GENERATOR_VERSION = "2"

# Sentinel-2 processing baseline 04.00 (the +1000 BOA offset) went live on this day.
BOA_OFFSET_SINCE = date(2022, 1, 25)


@dataclass(frozen=True)
class ArchiveParams:
    """Everything that determines an archive; same params + seed = same bytes of physics."""

    name: str = "lagos"
    lon: float = 3.3792
    lat: float = 6.5244
    size_km: float = 5.0
    start: date = date(2019, 1, 1)
    end: date = date(2021, 12, 31)
    seed: int = 0
    # True: apply the +1000 BOA offset like the real archive (baseline >= 04.00, from
    # 2022-01-25); False: never apply it (items then say boa_offset_applied = false).
    boa_offset: bool = True
    s2_revisit_days: int = 5
    s1_repeat_days: int = 12
    # None: about 1.6 construction sites per km2 (at least 3).
    n_sites: int | None = None
    # Day of year at which the wet season (clouds, green vegetation, high water) peaks.
    wet_season_peak_doy: int = 200

    def __post_init__(self) -> None:
        problems = []
        if not (-180 <= self.lon <= 180 and -80 <= self.lat <= 84):
            problems.append(("lon/lat", f"({self.lon}, {self.lat}) is outside the UTM range"))
        if not (0.3 <= self.size_km <= 50):
            problems.append(("size_km", f"{self.size_km} is outside 0.3..50 km"))
        if self.end <= self.start:
            problems.append(("end", f"end {self.end} is not after start {self.start}"))
        if self.s2_revisit_days < 1 or self.s1_repeat_days < 1:
            problems.append(("revisit", "revisit intervals must be at least one day"))
        if self.n_sites is not None and self.n_sites < 0:
            problems.append(("n_sites", f"{self.n_sites} is negative"))
        if problems:
            key, problem = problems[0]
            raise ConfigError("synthetic archive parameters", key, problem,
                              "fix the parameter (see `urban-monitor synthetic generate --help`)")

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days + 1

    def resolved_n_sites(self) -> int:
        if self.n_sites is not None:
            return self.n_sites
        return max(3, int(round(1.6 * self.size_km**2)))

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ArchiveParams:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("start", "end"):
            if isinstance(kwargs.get(key), str):
                kwargs[key] = date.fromisoformat(str(kwargs[key]))
        return replace(cls(), **kwargs)  # type: ignore[arg-type]

    def param_hash(self) -> str:
        """Stable hash of the parameters and the generator version (the cache key)."""
        data = self.to_dict()
        # 10 and 10.0 are the same size: normalise float fields so the cache key agrees.
        for f in fields(self):
            if f.type in ("float", float) and data[f.name] is not None:
                data[f.name] = float(data[f.name])  # type: ignore[arg-type]
        payload = json.dumps({"v": GENERATOR_VERSION, **data}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def city_grid(self) -> CityGrid:
        """A square grid of ``size_km`` centred on (lon, lat), origin snapped to 20 m.

        Snapping to 20 m (not only 10 m) keeps the 20 m Sentinel-2 bands aligned with the
        10 m ones, as they are on real MGRS tiles.
        """
        epsg = utm_epsg_for(self.lon, self.lat)
        cx, cy = Transformer.from_crs(4326, epsg, always_xy=True).transform(self.lon, self.lat)
        n = int(round(self.size_km * 1000 / 10.0))
        half = n * 10.0 / 2
        origin_x = math.floor((cx - half) / 20.0) * 20.0
        origin_y = math.ceil((cy + half) / 20.0) * 20.0
        return CityGrid(epsg=epsg, origin_x=origin_x, origin_y=origin_y, width=n, height=n)

    def aoi_wgs84(self) -> Polygon:
        """The city's area of interest in lon/lat (the grid's footprint)."""
        grid = self.city_grid()
        to_wgs84 = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform
        out = shapely.transform(box(*grid.bounds).segmentize(500.0), to_wgs84, interleaved=False)
        assert isinstance(out, Polygon)
        return out
