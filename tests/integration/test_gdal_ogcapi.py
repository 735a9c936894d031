"""A standard GIS client reads the API: GDAL's OGC API - Features driver (``ogrinfo``)
lists the collections and reads every alert through the paging links."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from monitor.adapters.database import Database
from services.api import create_app
from tests.integration.alerting_fixtures import serve
from tests.integration.test_api import api_settings, seed_alerts

OGRINFO = shutil.which("ogrinfo")
pytestmark = pytest.mark.skipif(
    OGRINFO is None, reason="ogrinfo (gdal-bin) is not installed; run docker/apt-deps.sh")


def ogrinfo(*args: str) -> str:
    env = {**os.environ, "GDAL_HTTP_TIMEOUT": "20", "CPL_DEBUG": "OFF"}
    done = subprocess.run([OGRINFO, "-ro", *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)  # type: ignore[list-item]
    assert done.returncode == 0, f"ogrinfo {' '.join(args)} failed:\n{done.stderr[-2000:]}"
    return done.stdout


def test_gdal_oapif_driver_reads_the_alerts_collection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'gdal.db'}")
    db.init_schema()
    ids = seed_alerts(db)
    # Pages of 2: GDAL must follow the 'next' links to read all 5 alerts.
    app = create_app(api_settings(default_limit=2, max_limit=2), db)
    with serve(app) as url:
        layers = ogrinfo("-so", f"OAPIF:{url}")
        assert re.search(r"^1: alerts \(title: Urban change alerts\) \(Polygon\)", layers, re.M)
        assert re.search(r"^2: cities ", layers, re.M)
        # Every status (the items' default is the provisional + confirmed feed): GDAL
        # carries the collection URL's query into its item requests.
        every = f"OAPIF:{url}/collections/alerts?status=all"
        summary = ogrinfo("-al", "-so", every)
        assert "Feature Count: 5" in summary
        assert re.search(r"^first_detected: Date", summary, re.M)
        assert re.search(r"^area_m2: Real", summary, re.M)
        features = ogrinfo("-al", "-q", every)
        read_ids = re.findall(r"^\s+id \(String\) = (\w+)$", features, re.M)
        assert sorted(read_ids) == sorted(ids.values())
        assert features.count("POLYGON ((18.") == 5
        # A spatial filter goes to the server as bbox=: two of the five sites.
        west, south, east, north = 18.0570, 59.3220, 18.0645, 59.3240
        near = ogrinfo("-al", "-q", "-spat", str(west), str(south), str(east), str(north),
                       every)
        assert sorted(re.findall(r"^\s+id \(String\) = (\w+)$", near, re.M)) == sorted(
            [ids["r0"], ids["r1"]])
    db.dispose()
