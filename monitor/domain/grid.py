"""The fixed per-city raster grid: its UTM zone, 10 m pixels, origin snapped to the pixel.

Every scene is resampled onto this grid once, at read time, so that the per-pixel change
state of a city always lines up with itself. Pure logic: pyproj and shapely only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box, mapping
from shapely.geometry.base import BaseGeometry

from monitor.errors import GeometryError

PIXEL_SIZE_M = 10.0


def utm_epsg_for(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone that contains (lon, lat)."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise GeometryError(
            f"point ({lon}, {lat}) is outside longitude/latitude bounds",
            "give coordinates as longitude, latitude in degrees (EPSG:4326)",
        )
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def reproject_geometry(geom: BaseGeometry, src_epsg: int, dst_epsg: int) -> BaseGeometry:
    """Reproject a shapely geometry (x/y order, i.e. lon/lat for EPSG:4326)."""
    transformer = Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)

    def _apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, _apply)


@dataclass(frozen=True)
class CityGrid:
    """A north-up grid: ``origin`` is the upper-left corner in the grid CRS (metres)."""

    epsg: int
    origin_x: float
    origin_y: float
    width: int
    height: int
    pixel_size: float = PIXEL_SIZE_M

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid CRS."""
        return (
            self.origin_x,
            self.origin_y - self.height * self.pixel_size,
            self.origin_x + self.width * self.pixel_size,
            self.origin_y,
        )

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL-order affine coefficients (a, b, c, d, e, f) as rasterio's ``Affine``."""
        return (self.pixel_size, 0.0, self.origin_x, 0.0, -self.pixel_size, self.origin_y)

    def area_km2(self) -> float:
        return self.n_pixels * self.pixel_size**2 / 1e6

    def footprint_wgs84(self) -> Polygon:
        """The grid's extent as a lon/lat polygon (densified so UTM curvature is kept)."""
        poly = box(*self.bounds).segmentize(self.pixel_size * 50)
        out = reproject_geometry(poly, self.epsg, 4326)
        assert isinstance(out, Polygon)
        return out

    @classmethod
    def from_aoi(cls, aoi: BaseGeometry, pixel_size: float = PIXEL_SIZE_M) -> CityGrid:
        """Cover a lon/lat AOI with a grid in its UTM zone, origin snapped to ``pixel_size``."""
        if aoi.is_empty or not aoi.is_valid:
            raise GeometryError(
                f"area of interest is {'empty' if aoi.is_empty else 'not a valid geometry'}",
                "give a closed, non-self-intersecting polygon or a bbox [west, south, east, north]",
            )
        west, south, east, north = aoi.bounds
        if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
            raise GeometryError(
                f"area of interest bounds {aoi.bounds} are not longitude/latitude degrees",
                "give the AOI in EPSG:4326 (longitude, latitude)",
            )
        centroid = aoi.centroid
        epsg = utm_epsg_for(centroid.x, centroid.y)
        left, bottom, right, top = reproject_geometry(aoi, 4326, epsg).bounds
        left = math.floor(left / pixel_size) * pixel_size
        top = math.ceil(top / pixel_size) * pixel_size
        right = math.ceil(right / pixel_size) * pixel_size
        bottom = math.floor(bottom / pixel_size) * pixel_size
        width = int(round((right - left) / pixel_size))
        height = int(round((top - bottom) / pixel_size))
        if width < 1 or height < 1:
            raise GeometryError(
                f"area of interest is smaller than one {pixel_size} m pixel",
                "give a larger area of interest",
            )
        return cls(epsg=epsg, origin_x=left, origin_y=top, width=width, height=height,
                   pixel_size=pixel_size)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "epsg": self.epsg,
            "origin_x": self.origin_x,
            "origin_y": self.origin_y,
            "width": self.width,
            "height": self.height,
            "pixel_size": self.pixel_size,
        }

    def footprint_geojson(self) -> dict[str, object]:
        return dict(mapping(self.footprint_wgs84()))
