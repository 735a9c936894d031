"""Reading the Onera Satellite Change Detection dataset (OSCD) and its Sentinel-1 companion.

No torch here: evaluation reads the same data with onnxruntime only.

Layout (any directory in this layout works, also cities never seen in training)::

    <root>/<city>/imgs_1/*_B02.tif ... *_B12.tif   (uint16 L1C reflectance x 10000)
    <root>/<city>/imgs_2/...
    <root>/<city>/cm/<city>-cm.tif                 (1 = no change, 2 = change)
    <s1 root>/sentinel1_<city>_<orbit>_t{1,2}.tif  (VV, scaled dB in [0, 1], EPSG:4326)

The 10 m bands define the city grid; the 20 m bands (B11, B12) and the S1 rasters are
resampled onto it by georeference (bilinear).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.warp import reproject

from monitor.domain.normalisation import S2_BANDS
from monitor.errors import UrbanMonitorError

# All L2A bands the live pipeline can read at 10/20 m, in this order (issue 15); the
# 6-band set S2_BANDS is a subset of it.
S2_BANDS_10: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
)  # fmt: skip
BAND_SETS: dict[str, tuple[str, ...]] = {"6": S2_BANDS, "10": S2_BANDS_10}

log = logging.getLogger(__name__)

OSCD_CITIES: tuple[str, ...] = (
    "abudhabi", "beihai", "bercy", "bordeaux", "cupertino",
    "mumbai", "paris", "pisa", "rennes", "saclay_e",
)  # fmt: skip


class DatasetError(UrbanMonitorError):
    """A dataset directory does not follow the layout it claims to have."""


@dataclass
class CityPair:
    """One OSCD city: two S2 dates, the change label and the S1 orbits (if any)."""

    name: str
    s2_t1: np.ndarray  # (C, H, W) float32 reflectance (DN / 10000), bands as read
    s2_t2: np.ndarray
    label: np.ndarray | None  # (H, W) uint8, 1 = change, 0 = no change
    s1_t1: list[np.ndarray] = field(default_factory=list)  # per orbit (1, H, W) scaled dB
    s1_t2: list[np.ndarray] = field(default_factory=list)
    s1_orbits: list[str] = field(default_factory=list)

    @property
    def valid(self) -> np.ndarray:
        """Pixels with data on both dates in all bands."""
        return np.all(self.s2_t1 > 0, axis=0) & np.all(self.s2_t2 > 0, axis=0)

    @property
    def has_s1(self) -> bool:
        return len(self.s1_orbits) > 0


def list_cities(root: Path) -> list[str]:
    """Cities in an OSCD-layout directory (sub-folders that contain imgs_1 and imgs_2)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"OSCD directory {root} does not exist",
            "pass --data pointing at a folder with <city>/imgs_1, imgs_2 and cm/",
        )
    cities = sorted(
        p.name for p in root.iterdir() if (p / "imgs_1").is_dir() and (p / "imgs_2").is_dir()
    )
    if not cities:
        raise DatasetError(
            f"no city folders with imgs_1/ and imgs_2/ under {root}",
            "check the path; the expected layout is <root>/<city>/imgs_1/*_B02.tif",
        )
    return cities


def _band_path(folder: Path, band: str) -> Path:
    matches = sorted(folder.glob(f"*{band}.tif"))
    if not matches:
        raise DatasetError(
            f"band {band} missing in {folder}",
            "each imgs_N folder needs one GeoTIFF per band named *_<band>.tif",
        )
    return matches[0]


def _read_s2(
    folder: Path, grid: dict | None = None, bands: tuple[str, ...] = S2_BANDS
) -> tuple[np.ndarray, dict]:
    """Read ``bands`` onto ``grid`` (default: the grid of this folder's 10 m band B02).

    Returns reflectance (DN / 10000; 0 where there is no data) and the grid.
    """
    if grid is None:
        with rasterio.open(_band_path(folder, "B02")) as ref:
            grid = {"transform": ref.transform, "crs": ref.crs, "shape": ref.shape}
    height, width = grid["shape"]
    dst_transform, dst_crs = grid["transform"], grid["crs"]
    out = np.zeros((len(bands), height, width), dtype=np.float32)
    for i, band in enumerate(bands):
        with rasterio.open(_band_path(folder, band)) as src:
            data = src.read(1).astype(np.float32)
            if src.shape == (height, width) and src.transform == dst_transform:
                out[i] = data
            else:
                reproject(
                    data, out[i], src_transform=src.transform, src_crs=src.crs,
                    dst_transform=dst_transform, dst_crs=dst_crs,
                    resampling=Resampling.bilinear,
                )  # fmt: skip
    return out / 10000.0, grid


def _read_onto(path: Path, grid: dict) -> np.ndarray:
    out = np.full(grid["shape"], np.nan, dtype=np.float32)
    with rasterio.open(path) as src:
        reproject(
            src.read(1).astype(np.float32), out, src_transform=src.transform, src_crs=src.crs,
            dst_transform=grid["transform"], dst_crs=grid["crs"], src_nodata=np.nan,
            dst_nodata=np.nan, resampling=Resampling.bilinear,
        )  # fmt: skip
    return out[None]


def load_city(
    root: Path, city: str, s1_root: Path | None = None, bands: tuple[str, ...] = S2_BANDS
) -> CityPair:
    """Read one city (S2 ``bands``); the label is None when the city has no cm/ folder."""
    folder = Path(root) / city
    try:
        s2_t1, grid = _read_s2(folder / "imgs_1", bands=bands)
        # Some cities' second date is on a slightly different grid (abudhabi, saclay_e):
        # the first date's grid is the label's grid, so everything is resampled onto it.
        s2_t2, _ = _read_s2(folder / "imgs_2", grid, bands)
        label = None
        cm = folder / "cm" / f"{city}-cm.tif"
        if cm.exists():
            # The label has no georeference: it is on the first date's 10 m grid.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(cm) as src:
                    raw = src.read(1)
            if raw.shape != grid["shape"]:
                raise DatasetError(
                    f"city {city}: label {raw.shape} differs from images {grid['shape']}",
                    "the label must have the size of the 10 m bands",
                )
            # The files say 1 = no change, 2 = change (the dataset README says 0/1).
            label = (raw == 2).astype(np.uint8) if raw.max() > 1 else (raw == 1).astype(np.uint8)
        pair = CityPair(city, s2_t1, s2_t2, label)
        if s1_root is not None:
            pattern = re.compile(rf"sentinel1_{re.escape(city)}_(\d+)_t1\.tif$")
            for p in sorted(Path(s1_root).glob(f"sentinel1_{city}_*_t1.tif")):
                m = pattern.match(p.name)
                t2 = p.with_name(p.name.replace("_t1.tif", "_t2.tif"))
                if not m or not t2.exists():
                    continue
                pair.s1_t1.append(_read_onto(p, grid))
                pair.s1_t2.append(_read_onto(t2, grid))
                pair.s1_orbits.append(m.group(1))
        return pair
    except RasterioIOError as exc:
        raise DatasetError(
            f"city {city}: cannot read rasters under {folder}: {exc}",
            "check that the GeoTIFFs are complete and readable",
        ) from exc


def load_cities(
    root: Path,
    cities: list[str] | None = None,
    s1_root: Path | None = None,
    bands: tuple[str, ...] = S2_BANDS,
) -> list[CityPair]:
    """Read several cities (all in the directory when ``cities`` is None)."""
    names = cities or list_cities(root)
    return [load_city(root, c, s1_root, bands) for c in names]
