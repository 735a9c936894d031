"""Security and operations (issue 17): STAC asset hrefs are opened only where their
provider is configured to point (``providers.<name>.asset_schemes / asset_hosts /
local_assets``). Real GeoTIFFs read by GDAL, from a local file and from a real HTTP
server on loopback (range requests), through the worker's reader."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from monitor.adapters.raster import AssetPolicy, RasterioSceneReader, asset_policies
from monitor.domain.events import Asset, SceneData
from monitor.domain.grid import CityGrid
from monitor.errors import SceneReadError
from monitor.settings import load_settings

GRID = CityGrid(epsg=32633, origin_x=674000.0, origin_y=6580000.0, width=20, height=20)


@pytest.fixture
def cog(tmp_path: Path) -> Path:
    path = tmp_path / "www" / "vv.tif"
    path.parent.mkdir()
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=1,
                       dtype="float32", crs="EPSG:32633", nodata=0,
                       transform=from_origin(673900.0, 6580100.0, 10.0, 10.0)) as dst:
        dst.write(np.full((1, 40, 40), 0.05, np.float32))
    return path


def scene(href: str, provider: str) -> SceneData:
    return SceneData(city_id="c", provider=provider, stac_api="x", collection="sentinel-1-rtc",
                     item_id="item", modality="s1", acquired=datetime(2024, 1, 1, tzinfo=UTC),
                     bbox=[0, 0, 1, 1], assets={"vv": Asset(href=href, key="vv")})


class CountingHandler(SimpleHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        CountingHandler.hits.append(self.path)
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        CountingHandler.hits.append(self.path)
        super().do_HEAD()

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def http_cog(cog: Path):  # type: ignore[no-untyped-def]
    CountingHandler.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(CountingHandler, directory=str(cog.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/vv.tif"
    server.shutdown()


def test_the_shipped_providers_only_read_their_own_object_stores() -> None:
    policies = asset_policies(load_settings().providers)
    es, pc = policies["earth-search"], policies["planetary-computer"]
    assert es.problem("https://sentinel-cogs.s3.us-west-2.amazonaws.com/a/B04.tif") is None
    assert pc.problem("https://sentinel2l2a01.blob.core.windows.net/x/B04.tif?sv=1") is None
    for href in ("file:///etc/passwd", "/etc/passwd", "relative/x.tif",
                 "/vsicurl/http://169.254.169.254/latest/meta-data",
                 "/vsizip//tmp/x.zip/a.tif", "http://sentinel-cogs.s3.amazonaws.com/x.tif",
                 "https://169.254.169.254/x.tif", "https://evil.example/x.tif",
                 "https://amazonaws.com.evil.example/x.tif", "ftp://x.amazonaws.com/x.tif",
                 "https://x.amazonaws.com\n/vsicurl/y"):
        assert es.problem(href), href
    assert pc.problem("https://sentinel-cogs.s3.us-west-2.amazonaws.com/a.tif")


def test_a_remote_provider_never_opens_local_files_or_other_hosts(cog: Path,
                                                                   http_cog: str) -> None:
    reader = RasterioSceneReader(policies={"remote": AssetPolicy(hosts=("*.amazonaws.com",))})
    for href in (str(cog), f"file://{cog}", f"/vsicurl/{http_cog}", http_cog,
                 http_cog.replace("http://", "https://")):
        with pytest.raises(SceneReadError, match="is refused"):
            reader.read(scene(href, "remote"), GRID)
    with pytest.raises(SceneReadError, match="not configured"):
        reader.read(scene(str(cog), "unknown-provider"), GRID)
    assert CountingHandler.hits == []  # GDAL never sent a request


def test_a_local_provider_reads_its_files_and_its_own_server(cog: Path, http_cog: str) -> None:
    from monitor.settings import ProviderSettings

    local = ProviderSettings(url=http_cog.rsplit("/", 1)[0] + "/", collections={
        "sentinel-1-rtc": {"modality": "s1", "assets": {"vv": "vv"}}})
    reader = RasterioSceneReader(policies=asset_policies({"synthetic": local}))
    for href in (str(cog), http_cog):
        raster = reader.read(scene(href, "synthetic"), GRID)
        assert raster.valid.any() and np.nanmax(raster.values) == pytest.approx(0.05)
    assert CountingHandler.hits  # the http one went through GDAL's /vsicurl/
    with pytest.raises(SceneReadError, match="raw GDAL"):
        reader.read(scene(f"/vsicurl/{http_cog}", "synthetic"), GRID)
    explicit = local.model_copy(update={"local_assets": False})
    strict = RasterioSceneReader(policies=asset_policies({"synthetic": explicit}))
    with pytest.raises(SceneReadError, match="local files"):
        strict.read(scene(str(cog), "synthetic"), GRID)
