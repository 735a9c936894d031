"""STAC items and collections for synthetic scenes, shaped like the real providers' ones.

Sentinel-2 items copy Element 84 Earth Search v1 (`sentinel-2-l2a`: asset keys blue,
green, red, nir, swir16, swir22, scl; `s2:*`, `eo:cloud_cover`, `proj:epsg`,
`earthsearch:boa_offset_applied`, `raster:bands` scale/offset). Sentinel-1 items copy the
Microsoft Planetary Computer `sentinel-1-rtc` items (assets vv, vh in linear gamma0 power;
`sar:*`, `sat:*`, `s1:*`), because radiometrically terrain-corrected gamma0 is what the
generator simulates. Pure dict building: no IO.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor.domain.grid import CityGrid
from monitor.synthetic.sensors import S1_ENL, S1_NODATA, S1Acquisition, S2Acquisition

S2_COLLECTION = "sentinel-2-l2a"
S1_COLLECTION = "sentinel-1-rtc"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
S1_UNIT = "gamma0 (terrain-flattened backscatter), linear power, not dB"
LICENSE_LINK = {"rel": "license",
                "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"}

# asset key -> (file band, title, common name, centre wavelength, fwhm, resolution)
S2_ASSETS = {
    "blue": ("B02", "Blue (band 2) - 10m", 0.49, 0.098, 10),
    "green": ("B03", "Green (band 3) - 10m", 0.56, 0.045, 10),
    "red": ("B04", "Red (band 4) - 10m", 0.665, 0.038, 10),
    "nir": ("B08", "NIR 1 (band 8) - 10m", 0.842, 0.145, 10),
    "swir16": ("B11", "SWIR 1 (band 11) - 20m", 1.61, 0.143, 20),
    "swir22": ("B12", "SWIR 2 (band 12) - 20m", 2.19, 0.242, 20),
}
S2_EXTENSIONS = [
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
]
S1_EXTENSIONS = [
    "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_MGRS_COLS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_MGRS_ROWS = "ABCDEFGHJKLMNPQRSTUV"


def mgrs_tile(epsg: int, lat: float, easting: float, northing: float) -> tuple[int, str, str]:
    """(UTM zone, latitude band, 100 km square) of the MGRS tile holding a UTM point."""
    zone = epsg % 100
    band = _MGRS_BANDS[min(max(int((lat + 80) // 8), 0), len(_MGRS_BANDS) - 1)]
    col = _MGRS_COLS[(zone - 1) % 3][int(easting // 100000) - 1]
    row_index = int(northing // 100000) + (5 if zone % 2 == 0 else 0)
    return zone, band, col + _MGRS_ROWS[row_index % 20]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _proj_transform(grid: CityGrid, res: float) -> list[float]:
    return [res, 0.0, grid.origin_x, 0.0, -res, grid.origin_y]


def _footprint(grid: CityGrid) -> tuple[dict[str, Any], list[float]]:
    geom = grid.footprint_wgs84()
    return dict(geom.__geo_interface__), [round(v, 9) for v in geom.bounds]


def s2_item_id(acq: S2Acquisition, grid: CityGrid, lat: float) -> str:
    zone, band, square = mgrs_tile(grid.epsg, lat, grid.origin_x, grid.origin_y)
    sat = "S2A" if acq.platform.endswith("a") else "S2B"
    return f"{sat}_{zone}{band}{square}_{acq.time:%Y%m%d}_0_L2A"


def s1_item_id(acq: S1Acquisition) -> str:
    sat = "S1A" if acq.platform.endswith("A") else "S1B"
    start = acq.time - timedelta(seconds=6)
    end = acq.time + timedelta(seconds=6)
    datatake = (acq.absolute_orbit * 7919) % 0xFFFFFF
    return (f"{sat}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}_"
            f"{acq.absolute_orbit:06d}_{datatake:06X}_rtc")


def build_s2_item(acq: S2Acquisition, grid: CityGrid, lat: float, hrefs: dict[str, str],
                  percentages: dict[str, float], archive_hash: str) -> dict[str, Any]:
    """An Earth Search v1 style `sentinel-2-l2a` item; ``hrefs`` maps asset key -> file."""
    item_id = s2_item_id(acq, grid, lat)
    zone, band, square = mgrs_tile(grid.epsg, lat, grid.origin_x, grid.origin_y)
    published = acq.time + acq.latency
    baseline = acq.processing_baseline
    gen_time = acq.time + acq.latency * 0.8
    offset = -0.1 if acq.boa_offset else 0.0
    sat = "S2A" if acq.platform.endswith("a") else "S2B"
    geometry, bbox = _footprint(grid)
    h, w = grid.shape
    assets: dict[str, Any] = {}
    for key, (_, title, wl, fwhm, res) in S2_ASSETS.items():
        shape = [h, w] if res == 10 else [(h + 1) // 2, (w + 1) // 2]
        assets[key] = {
            "href": hrefs[key], "type": COG_TYPE, "title": title,
            "eo:bands": [{"name": key, "common_name": key, "description": title.split(" - ")[0],
                          "center_wavelength": wl, "full_width_half_max": fwhm}],
            "gsd": res, "proj:shape": shape, "proj:transform": _proj_transform(grid, res),
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                              "spatial_resolution": res, "scale": 0.0001, "offset": offset}],
            "roles": ["data", "reflectance"],
        }
    assets["scl"] = {
        "href": hrefs["scl"], "type": COG_TYPE, "title": "Scene classification map (SCL)",
        "proj:shape": [(h + 1) // 2, (w + 1) // 2], "proj:transform": _proj_transform(grid, 20),
        "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
        "roles": ["data", "reflectance"],
    }
    properties: dict[str, Any] = {
        "created": _iso(published),
        "published": _iso(published),
        "platform": acq.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": percentages["eo:cloud_cover"],
        "proj:epsg": grid.epsg,
        "proj:code": f"EPSG:{grid.epsg}",
        "mgrs:utm_zone": zone,
        "mgrs:latitude_band": band,
        "mgrs:grid_square": square,
        "grid:code": f"MGRS-{zone}{band}{square}",
        "view:sun_azimuth": acq.sun_azimuth,
        "view:sun_elevation": acq.sun_elevation,
        "s2:degraded_msi_data_percentage": 0,
        **{k: v for k, v in percentages.items() if k.startswith("s2:")},
        "s2:product_type": "S2MSI2A",
        "s2:processing_baseline": baseline,
        "s2:product_uri": (f"{sat}_MSIL2A_{acq.time:%Y%m%dT%H%M%S}_N{baseline.replace('.', '')}"
                           f"_R{acq.relative_orbit:03d}_T{zone}{band}{square}_"
                           f"{gen_time:%Y%m%dT%H%M%S}.SAFE"),
        "s2:generation_time": gen_time.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "s2:datatake_id": f"G{sat}_{acq.time:%Y%m%dT%H%M%S}_{acq.index:06d}_N{baseline}",
        "s2:datatake_type": "INS-NOBS",
        "s2:reflectance_conversion_factor": 1.0,
        "datetime": _iso(acq.time),
        "s2:sequence": "0",
        "earthsearch:boa_offset_applied": acq.boa_offset,
        "processing:software": {"urban-monitor-synthetic": "1"},
        "updated": _iso(published),
        "synthetic:archive": archive_hash,
    }
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "properties": properties,
        "geometry": geometry, "links": [LICENSE_LINK], "assets": assets, "bbox": bbox,
        "stac_extensions": S2_EXTENSIONS, "collection": S2_COLLECTION,
    }


def build_s1_item(acq: S1Acquisition, grid: CityGrid, hrefs: dict[str, str],
                  archive_hash: str) -> dict[str, Any]:
    """A Planetary Computer style `sentinel-1-rtc` item; ``hrefs`` maps vv/vh -> file."""
    item_id = s1_item_id(acq)
    published = acq.time + acq.latency
    geometry, bbox = _footprint(grid)
    h, w = grid.shape
    start, end = acq.time - timedelta(seconds=6), acq.time + timedelta(seconds=6)
    assets = {}
    for pol in ("vh", "vv"):
        up = pol.upper()
        assets[pol] = {
            "href": hrefs[pol], "type": COG_TYPE, "roles": ["data"],
            "title": f"{up}: vertical transmit, {'horizontal' if pol == 'vh' else 'vertical'} receive",
            "description": (f"Terrain-corrected gamma naught values of signal transmitted with "
                            f"vertical polarization and received with "
                            f"{'horizontal' if pol == 'vh' else 'vertical'} polarization with "
                            f"radiometric terrain correction applied. Unit: {S1_UNIT}."),
            "raster:bands": [{"nodata": S1_NODATA, "data_type": "float32",
                              "spatial_resolution": 10.0, "unit": "linear power"}],
        }
    properties: dict[str, Any] = {
        "datetime": acq.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "platform": acq.platform,
        "s1:shape": [w, h],
        "proj:bbox": list(grid.bounds),
        "proj:epsg": grid.epsg,
        "proj:code": f"EPSG:{grid.epsg}",
        "proj:shape": [h, w],
        "end_datetime": end.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
        "constellation": "Sentinel-1",
        "s1:resolution": "high",
        "proj:transform": [*_proj_transform(grid, 10), 0.0, 0.0, 1.0],
        "s1:datatake_id": str(acq.absolute_orbit * 7919 % 0xFFFFFF),
        "start_datetime": start.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
        "s1:orbit_source": "RESORB",
        "s1:slice_number": "5",
        "s1:total_slices": "12",
        "sar:looks_range": 5,
        "sat:orbit_state": acq.orbit_state,
        "sar:product_type": "GRD",
        "sar:looks_azimuth": 1,
        "sar:polarizations": ["VV", "VH"],
        "sar:frequency_band": "C",
        "sat:absolute_orbit": acq.absolute_orbit,
        "sat:relative_orbit": acq.relative_orbit,
        "s1:processing_level": "1",
        "sar:instrument_mode": "IW",
        "sar:center_frequency": 5.405,
        "sar:resolution_range": 20,
        "s1:product_timeliness": "Fast-24h",
        "sar:resolution_azimuth": 22,
        "sar:pixel_spacing_range": 10,
        "sar:observation_direction": "right",
        "sar:pixel_spacing_azimuth": 10,
        "sar:looks_equivalent_number": S1_ENL,
        "s1:instrument_configuration_ID": "7",
        "sat:platform_international_designator": (
            "2014-016A" if acq.platform.endswith("A") else "2016-025A"),
        "created": _iso(published),
        "published": _iso(published),
        "synthetic:backscatter_unit": S1_UNIT,
        "synthetic:archive": archive_hash,
    }
    return {
        "id": item_id, "bbox": bbox, "type": "Feature", "geometry": geometry,
        "collection": S1_COLLECTION, "properties": properties, "links": [LICENSE_LINK],
        "assets": assets, "stac_extensions": S1_EXTENSIONS, "stac_version": "1.0.0",
    }


def _extent(bbox: list[float], start: datetime, end: datetime) -> dict[str, Any]:
    return {"spatial": {"bbox": [bbox]},
            "temporal": {"interval": [[_iso(start), _iso(end)]]}}


def build_s2_collection(bbox: list[float], start: datetime, end: datetime) -> dict[str, Any]:
    """The `sentinel-2-l2a` collection, modelled on Earth Search v1's."""
    item_assets = {key: {"type": COG_TYPE, "title": title, "gsd": res,
                         "eo:bands": [{"name": key, "common_name": key}],
                         "raster:bands": [{"nodata": 0, "data_type": "uint16",
                                           "spatial_resolution": res, "scale": 0.0001}],
                         "roles": ["data", "reflectance"]}
                   for key, (_, title, _wl, _fw, res) in S2_ASSETS.items()}
    item_assets["scl"] = {"type": COG_TYPE, "title": "Scene classification map (SCL)",
                          "raster:bands": [{"nodata": 0, "data_type": "uint8",
                                            "spatial_resolution": 20}],
                          "roles": ["data", "reflectance"]}
    return {
        "type": "Collection", "id": S2_COLLECTION, "stac_version": "1.0.0",
        "title": "Sentinel-2 Level-2A (synthetic)",
        "description": ("Synthetic Sentinel-2 L2A surface reflectance of a simulated city, "
                        "shaped like Earth Search v1 items (uint16, scale 0.0001; offset -0.1 "
                        "where earthsearch:boa_offset_applied is true)."),
        "links": [LICENSE_LINK],
        "stac_extensions": [
            "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
            "https://stac-extensions.github.io/view/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
        ],
        "item_assets": item_assets,
        "extent": _extent(bbox, start, end),
        "license": "proprietary",
        "providers": [{"name": "Urban Monitor synthetic generator", "roles": ["producer"]}],
        "summaries": {"platform": ["sentinel-2a", "sentinel-2b"],
                      "constellation": ["sentinel-2"], "instruments": ["msi"],
                      "gsd": [10, 20]},
    }


def build_s1_collection(bbox: list[float], start: datetime, end: datetime) -> dict[str, Any]:
    """The `sentinel-1-rtc` collection, modelled on Planetary Computer's."""
    item_assets = {pol: {"type": COG_TYPE, "roles": ["data"], "title": pol.upper(),
                         "raster:bands": [{"nodata": S1_NODATA, "data_type": "float32",
                                           "spatial_resolution": 10, "unit": "linear power"}]}
                   for pol in ("vh", "vv")}
    return {
        "id": S1_COLLECTION, "type": "Collection",
        "title": "Sentinel 1 Radiometrically Terrain Corrected (RTC) (synthetic)",
        "description": (f"Synthetic Sentinel-1 RTC of a simulated city, shaped like Planetary "
                        f"Computer items. Values: {S1_UNIT}; speckle of {S1_ENL} looks."),
        "links": [LICENSE_LINK],
        "extent": _extent(bbox, start, end),
        "license": "CC-BY-4.0",
        "keywords": ["Sentinel", "C-Band", "SAR", "RTC", "synthetic"],
        "providers": [{"name": "Urban Monitor synthetic generator", "roles": ["producer"]}],
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
            "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
        ],
        "item_assets": item_assets,
        "summaries": {"platform": ["SENTINEL-1A", "SENTINEL-1B"],
                      "sar:polarizations": ["VV", "VH"], "sat:orbit_state":
                      ["ascending", "descending"], "sar:instrument_mode": ["IW"]},
    }
