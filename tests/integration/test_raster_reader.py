"""Reading real GeoTIFFs onto a city grid: reprojection, masks, and clear failures."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from monitor.adapters.raster import RasterioSceneReader
from monitor.domain.events import Asset, SceneData
from monitor.domain.grid import CityGrid
from monitor.errors import SceneReadError


def s1_scene(vv: Path, item: str = "opera") -> SceneData:
    return SceneData(city_id="c", provider="p", stac_api="x", collection="sentinel-1-rtc",
                     item_id=item, modality="s1", acquired=datetime(2021, 11, 19, tzinfo=UTC),
                     bbox=[0, 0, 1, 1], assets={"vv": Asset(href=str(vv), key="vv")})


@pytest.fixture
def opera_vv(shared_data: Path) -> Path:
    files = sorted((shared_data / "s1-rtc-opera" / "10SGD" / "137").glob("*/*IW1*_VV.tif"))
    assert files, "OPERA series missing"
    return files[0]


def grid_over(path: Path) -> CityGrid:
    with rasterio.open(path) as src:
        from rasterio.warp import transform_bounds

        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return CityGrid.from_aoi(box(west, south, east, north))


def test_real_s1_rtc_lands_on_the_10m_grid(opera_vv: Path) -> None:
    grid = grid_over(opera_vv)
    raster = RasterioSceneReader().read(s1_scene(opera_vv), grid)
    assert raster.values.shape == (1, grid.height, grid.width)
    assert raster.values.dtype == np.float32
    assert 0.3 < raster.valid_fraction <= 1.0  # the AOI bbox is a bit larger than the tile
    vv = raster.values[0][raster.valid]
    with rasterio.open(opera_vv) as src:
        native = src.read(1)
    native = native[np.isfinite(native) & (native > 0)]
    # 30 m -> 10 m bilinear keeps the level of backscatter
    assert abs(np.median(vv) - np.median(native)) / np.median(native) < 0.1
    assert np.isnan(raster.values[0][~raster.valid]).all()


def test_real_oscd_band_in_epsg4326_is_reprojected_to_utm(shared_data: Path) -> None:
    b04 = sorted((shared_data / "oscd" / "paris" / "imgs_1").glob("*B04.tif"))[0]
    grid = grid_over(b04)
    assert grid.epsg == 32631
    scene = s1_scene(b04)
    values, inside = RasterioSceneReader().read_band(scene, "vv", grid,
                                                     rasterio.enums.Resampling.bilinear)
    assert values.shape == grid.shape and inside.mean() > 0.5
    assert 100 < np.nanmedian(values[inside]) < 5000  # L1C DN: reflectance x 10000


def test_scene_that_misses_the_city_has_nothing_valid(opera_vv: Path) -> None:
    far = CityGrid.from_aoi(box(2.30, 48.80, 2.32, 48.82))  # Paris: the tile is in California
    raster = RasterioSceneReader().read(s1_scene(opera_vv), far)
    assert raster.valid_fraction == 0.0


def test_corrupt_asset_is_a_clear_error(tmp_path: Path, opera_vv: Path) -> None:
    bad = tmp_path / "broken.tif"
    bad.write_bytes(opera_vv.read_bytes()[:5000])  # a truncated COG
    with pytest.raises(SceneReadError) as info:
        RasterioSceneReader().read(s1_scene(bad, "broken-item"), grid_over(opera_vv))
    assert "broken-item" in str(info.value) and "vv" in str(info.value)


def test_missing_asset_and_missing_file_are_clear_errors(tmp_path: Path, opera_vv: Path) -> None:
    scene = s1_scene(opera_vv).model_copy(update={"assets": {}})
    with pytest.raises(SceneReadError, match="has no 'vv' asset"):
        RasterioSceneReader().read(scene, grid_over(opera_vv))
    with pytest.raises(SceneReadError, match="could not be read"):
        RasterioSceneReader().read(s1_scene(tmp_path / "nope.tif"), grid_over(opera_vv))


def test_file_without_crs_is_refused(tmp_path: Path, opera_vv: Path) -> None:
    plain = tmp_path / "nocrs.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=10, height=10, count=1,
                       dtype="float32") as dst:
        dst.write(np.ones((1, 10, 10), dtype=np.float32))
    with pytest.raises(SceneReadError, match="no CRS"):
        RasterioSceneReader().read(s1_scene(plain), grid_over(opera_vv))
