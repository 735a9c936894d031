"""Read one labelled OSCD city onto a city grid (the only rasterio code of the streams).

An OSCD city folder (``../shared/data/oscd/<city>/``) holds two real Sentinel-2 L1C
acquisitions (13 single-band GeoTIFFs per date, EPSG:4326, uint16 reflectance x 10000;
20 m and 60 m bands are smaller), ``dates.txt`` and the change label ``cm/<city>-cm.tif``
(1 = no change, 2 = change, no georeference: it shares the 10 m bands' grid). The
DS-UNet paper's real Sentinel-1 (``oscd-s1/sentinel1_<city>_<orbit>_t{1,2}.tif``: VV
3-month means before date 1 and after date 2, scaled dB 0..1, own EPSG:4326 grid) is
read where present.

Everything is resampled onto the city grid that ``CityGrid.from_aoi`` gives the image
footprint (UTM, 10 m, origin snapped), i.e. exactly the grid the pipeline will use for a
city configured with that footprint.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject
from shapely.geometry import Polygon, box

from monitor.domain.grid import CityGrid
from monitor.errors import StreamError

# Canonical asset key -> (OSCD band, native resolution m). The ten L2A bands at 10/20 m,
# in the order the archive writes them.
STREAM_BANDS: dict[str, tuple[str, int]] = {
    "blue": ("B02", 10), "green": ("B03", 10), "red": ("B04", 10),
    "rededge1": ("B05", 20), "rededge2": ("B06", 20), "rededge3": ("B07", 20),
    "nir": ("B08", 10), "nir08": ("B8A", 20), "swir16": ("B11", 20), "swir22": ("B12", 20),
}
BAND_KEYS = tuple(STREAM_BANDS)


@dataclass(frozen=True)
class OscdCity:
    """One labelled city on its grid. Reflectance (B, H, W) float32 0..1 in ``BAND_KEYS``
    order, NaN outside the image; S1 per relative orbit: (t1, t2) VV scaled dB 0..1."""

    name: str
    date_1: date
    date_2: date
    grid: CityGrid
    aoi: Polygon
    s2_1: np.ndarray
    s2_2: np.ndarray
    inside: np.ndarray            # (H, W) bool: covered by both real images
    change: np.ndarray            # (H, W) bool: the OSCD change label
    s1: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape


def oscd_cities(root: Path | str) -> list[str]:
    """The city folders under an OSCD root (those with dates.txt), sorted."""
    base = Path(root)
    if not base.is_dir():
        raise StreamError(f"OSCD folder {base} does not exist",
                          "give --data the folder that holds one sub-folder per city "
                          "(e.g. ../shared/data/oscd)")
    return sorted(p.name for p in base.iterdir() if (p / "dates.txt").is_file())


def _read_dates(path: Path) -> tuple[date, date]:
    found: dict[str, date] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(date_[12])\s*:\s*(\d{8})", line)
        if m:
            d = m.group(2)
            found[m.group(1)] = date(int(d[:4]), int(d[4:6]), int(d[6:]))
    if set(found) != {"date_1", "date_2"}:
        raise StreamError(f"{path} does not give date_1 and date_2 as YYYYMMDD",
                          "write two lines 'date_1: YYYYMMDD' and 'date_2: YYYYMMDD'")
    if found["date_2"] <= found["date_1"]:
        raise StreamError(f"{path}: date_2 {found['date_2']} is not after date_1 {found['date_1']}",
                          "give the acquisitions in time order")
    return found["date_1"], found["date_2"]


def _band_file(folder: Path, band: str) -> Path:
    matches = sorted(folder.glob(f"*_{band}.tif")) or sorted(folder.glob(f"*{band}.tif"))
    if not matches:
        raise StreamError(f"no {band} GeoTIFF in {folder}",
                          "an OSCD date folder holds one file per band, named *_B02.tif etc.")
    return matches[0]


def _warp(src: np.ndarray, src_transform: Affine, src_crs: object, grid: CityGrid,
          resampling: Resampling, fill: float) -> np.ndarray:
    out = np.full(grid.shape, fill, dtype=np.float32)
    reproject(src.astype(np.float32), out, src_transform=src_transform, src_crs=src_crs,
              dst_transform=Affine(*grid.transform), dst_crs=grid.crs,
              resampling=resampling, src_nodata=None, dst_nodata=fill)
    return out


def _read_date(folder: Path, grid: CityGrid) -> tuple[np.ndarray, np.ndarray]:
    layers, inside = [], np.ones(grid.shape, dtype=bool)
    for key in BAND_KEYS:
        band, _ = STREAM_BANDS[key]
        path = _band_file(folder, band)
        try:
            with rasterio.open(path) as src:
                data = src.read(1).astype(np.float32)
                out = _warp(data, src.transform, src.crs, grid, Resampling.bilinear, np.nan)
                cover = _warp(np.ones_like(data), src.transform, src.crs, grid,
                              Resampling.nearest, 0.0)
        except RasterioError as exc:
            raise StreamError(f"could not read {path}: {exc}",
                              "check the file; the OSCD folder may be incomplete") from exc
        inside &= (cover > 0.5) & np.isfinite(out) & (out > 0)
        layers.append(out / 10000.0)
    values = np.stack(layers).astype(np.float32)
    values[:, ~inside] = np.nan
    return values, inside


def _footprint(folder: Path) -> tuple[Polygon, Affine, object, tuple[int, int]]:
    path = _band_file(folder, "B02")
    with rasterio.open(path) as src:
        if src.crs is None:
            raise StreamError(f"{path} has no CRS", "OSCD images are georeferenced (EPSG:4326)")
        b = src.bounds
        return box(b.left, b.bottom, b.right, b.top), src.transform, src.crs, src.shape


def load_oscd_city(root: Path | str, city: str, s1_root: Path | str | None = None,
                   ) -> OscdCity:
    """Read ``city`` from an OSCD root (and its S1 from ``s1_root`` when given)."""
    folder = Path(root) / city
    if not folder.is_dir():
        raise StreamError(f"city '{city}' is not in {root}",
                          f"choose one of: {', '.join(oscd_cities(root))}")
    date_1, date_2 = _read_dates(folder / "dates.txt")
    aoi, transform, crs, shape = _footprint(folder / "imgs_1")
    grid = CityGrid.from_aoi(aoi)
    s2_1, in_1 = _read_date(folder / "imgs_1", grid)
    s2_2, in_2 = _read_date(folder / "imgs_2", grid)
    labels = sorted((folder / "cm").glob("*-cm.tif"))
    if not labels:
        raise StreamError(f"no change label cm/{city}-cm.tif in {folder}",
                          "the OSCD labels come with the dataset's train/test label archives")
    with warnings.catch_warnings():  # OSCD labels carry no geotransform: on the 10 m grid
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(labels[0]) as src:
            cm = src.read(1)
    if cm.shape != shape:
        raise StreamError(f"label {labels[0]} is {cm.shape}, the 10 m bands are {shape}",
                          "use the label of this city")
    # OSCD files say 1 = no change, 2 = change (its README says 0/1: accept both).
    positive = (cm == 2) if cm.max() >= 2 else (cm == 1)
    change = _warp(positive.astype(np.float32), transform, crs, grid, Resampling.nearest, 0.0) > 0.5
    inside = in_1 & in_2
    s1: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if s1_root is not None and Path(s1_root).is_dir():
        for t1 in sorted(Path(s1_root).glob(f"sentinel1_{city}_*_t1.tif")):
            m = re.match(rf"sentinel1_{re.escape(city)}_(\d+)_t1\.tif$", t1.name)
            t2 = t1.with_name(t1.name.replace("_t1.tif", "_t2.tif"))
            if not m or not t2.is_file():
                continue
            pair = []
            for path in (t1, t2):
                with rasterio.open(path) as src:
                    data = src.read(1).astype(np.float32)
                    pair.append(_warp(data, src.transform, src.crs, grid, Resampling.bilinear,
                                      np.nan))
            s1[int(m.group(1))] = (pair[0], pair[1])
    return OscdCity(name=city, date_1=date_1, date_2=date_2, grid=grid, aoi=aoi,
                    s2_1=s2_1, s2_2=s2_2, inside=inside, change=change & inside, s1=s1)
