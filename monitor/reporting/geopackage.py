"""Alerts as an OGC GeoPackage (1.3): one feature table in EPSG:4326, written with the
standard library's sqlite3 and shapely's WKB (no GDAL vector driver needed at run time).
QGIS, ArcGIS and GDAL (``ogrinfo``) read the file; ``tests/unit/test_geopackage.py``
checks it with ``ogrinfo`` when GDAL's tools are installed.

What the file holds (GeoPackage 1.3, sections 1.1 and 2.1): the ``GPKG`` application id
and user version 10300, ``gpkg_spatial_ref_sys`` with its three required rows,
``gpkg_contents`` with the layer's extent, ``gpkg_geometry_columns``, and the feature
table whose geometries are GeoPackage binary blobs (header with an XY envelope + ISO WKB).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

from monitor.errors import RenderError

_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,'
    'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]')
# (column, SQL type): the alert properties of the OGC items, in _CREATE_ALERTS' order.
ALERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("alert_id", "TEXT"), ("city_id", "TEXT"), ("status", "TEXT"), ("revision", "INTEGER"),
    ("area_m2", "REAL"), ("first_detected", "DATE"), ("confirmed", "DATE"),
    ("retracted", "DATE"), ("change_date", "DATE"), ("confidence", "REAL"),
    ("model_version", "TEXT"), ("scene_ids", "TEXT"), ("updated", "DATETIME"),
)
MEDIA_TYPE = "application/geopackage+sqlite3"


def geometry_blob(geometry: Any, srs_id: int = 4326) -> bytes:
    """A GeoPackage binary geometry: 'GP', version 0, flags (little endian, XY envelope),
    the SRS id, the envelope (minx, maxx, miny, maxy) and the ISO WKB."""
    minx, miny, maxx, maxy = geometry.bounds
    header = b"GP" + struct.pack("<BBi4d", 0, 0b011, srs_id, minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geometry, byte_order=1, flavor="iso")


def _as_multipolygon(geojson: Mapping[str, Any]) -> MultiPolygon:
    geom = shape(geojson)
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    if isinstance(geom, MultiPolygon):
        return geom
    raise RenderError(f"alert geometry is a {geom.geom_type}", "alerts are (multi)polygons")


def _value(props: Mapping[str, Any], column: str) -> Any:
    value = props.get(column)
    if column == "scene_ids" and isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return value


# The SQL is literal (no identifiers formatted in): the layer is always "alerts".
_CREATE_ALERTS = """
    CREATE TABLE alerts (
      fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom MULTIPOLYGON,
      alert_id TEXT, city_id TEXT, status TEXT, revision INTEGER, area_m2 REAL,
      first_detected DATE, confirmed DATE, retracted DATE, change_date DATE,
      confidence REAL, model_version TEXT, scene_ids TEXT, updated DATETIME)"""
_INSERT_ALERT = ("INSERT INTO alerts (geom, alert_id, city_id, status, revision, area_m2, "
                 "first_detected, confirmed, retracted, change_date, confidence, "
                 "model_version, scene_ids, updated) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def alerts_geopackage(features: Iterable[Mapping[str, Any]], *,
                      description: str = "Urban Monitor change alerts") -> bytes:
    """The GeoPackage bytes of GeoJSON alert features (OGC items properties), in one
    layer ``alerts``."""
    rows = []
    for f in features:
        props = dict(f.get("properties") or {})
        props.setdefault("alert_id", f.get("id"))
        rows.append((_as_multipolygon(f["geometry"]), props))
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
        conn.execute("PRAGMA user_version = 10300")
        conn.executescript("""
            CREATE TABLE gpkg_spatial_ref_sys (
              srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
              organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL,
              description TEXT);
            CREATE TABLE gpkg_contents (
              table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
              identifier TEXT UNIQUE, description TEXT DEFAULT '',
              last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
              min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
              CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
            CREATE TABLE gpkg_geometry_columns (
              table_name TEXT NOT NULL, column_name TEXT NOT NULL,
              geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL,
              z TINYINT NOT NULL, m TINYINT NOT NULL,
              CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
              CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
              CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
        """)
        conn.execute(_CREATE_ALERTS)
        conn.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", [
            ("WGS 84 geodetic", 4326, "EPSG", 4326, _WGS84_WKT, "longitude/latitude"),
            ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
        ])
        bounds = [g.bounds for g, _ in rows]
        extent = ((min(b[0] for b in bounds), min(b[1] for b in bounds),
                   max(b[2] for b in bounds), max(b[3] for b in bounds)) if bounds
                  else (None, None, None, None))
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        conn.execute("INSERT INTO gpkg_contents VALUES ('alerts', 'features', 'alerts', ?, ?, "
                     "?, ?, ?, ?, 4326)", (description, stamp, *extent))
        conn.execute("INSERT INTO gpkg_geometry_columns VALUES ('alerts', 'geom', "
                     "'MULTIPOLYGON', 4326, 0, 0)")
        conn.executemany(_INSERT_ALERT, [
            (geometry_blob(g), *(_value(p, c) for c, _ in ALERT_COLUMNS)) for g, p in rows])
        conn.commit()
        return bytes(conn.serialize())
    finally:
        conn.close()
