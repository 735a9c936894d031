"""A monitored city: id, name, area of interest and its fixed grid."""

from __future__ import annotations

from dataclasses import dataclass, field

from shapely.geometry.base import BaseGeometry

from monitor.domain.grid import CityGrid


@dataclass(frozen=True)
class City:
    id: str
    name: str
    aoi: BaseGeometry  # lon/lat (EPSG:4326)
    grid: CityGrid
    country: str = ""
    population: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_aoi(cls, city_id: str, name: str, aoi: BaseGeometry, *, country: str = "",
                 population: dict[int, float] | None = None) -> City:
        return cls(id=city_id, name=name, aoi=aoi, grid=CityGrid.from_aoi(aoi),
                   country=country, population=dict(population or {}))
