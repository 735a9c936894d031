"""`urban-monitor backfill` and `urban-monitor discover` against a real STAC API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from monitor.adapters.database import Database
from monitor.adapters.stac_server import StacServer
from tests.integration.stac_fixtures import (
    ES,
    collection_file,
    provider_settings,
    real_items,
    require_stac_dir,
    servable,
)

CITIES = [{"id": "ceara", "name": "Ceara coast", "bbox": [-40.5, -5.3, -37.5, -3.5]},
          {"id": "antarctic", "name": "Antarctic Peninsula", "bbox": [-60.0, -60.6, -59.0, -60.3]}]


def _run(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBAN_MONITOR_")}
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_backfill_and_discover_commands(tmp_path: Path, repo_root: Path) -> None:
    require_stac_dir()
    items = servable(real_items(ES, "sentinel-2-c1-l2a")) + servable(
        real_items(ES, "sentinel-2-l2a"))
    with StacServer([collection_file(ES, "sentinel-2-c1-l2a"),
                     collection_file(ES, "sentinel-2-l2a")], items) as es:
        db_url = f"sqlite:///{tmp_path / 'registry.db'}"
        config = tmp_path / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "database": {"url": db_url}, "bus": {"kind": "embedded"},
            "providers": {ES: provider_settings(es.url, ES)},
            "sources": [{"name": "es-s2-c1", "provider": ES, "collection": "sentinel-2-c1-l2a",
                         "lookback_days": 5, "max_cloud_cover": 50},
                        {"name": "es-s2", "provider": ES, "collection": "sentinel-2-l2a",
                         "lookback_days": 5, "max_cloud_cover": 50}],
            "cities": CITIES}))

        done = _run(repo_root, "--config", str(config), "backfill", "--city", "ceara",
                    "--start", "2025-07-01", "--end", "2025-07-31", "--source", "es-s2-c1")
        assert done.returncode == 0, done.stderr
        # 5 Ceara items; 24MUV (56.8 %) is over the 50 % cloud limit.
        assert "5 items, 4 published, 0 already known, 1 filtered" in done.stdout
        assert "backfill ceara" in done.stderr  # the tqdm progress bar

        once = _run(repo_root, "--config", str(config), "discover", "once",
                    "--now", "2025-08-01T00:00:00Z")
        assert once.returncode == 0, once.stderr
        lines = once.stdout.splitlines()
        assert any(line.startswith("es-s2-c1 @ 2025-08-01T00:00:00Z: 2 cities")
                   and "1 published" in line and "4 known" in line for line in lines), lines
        assert any(line.startswith("es-s2 @") and "5 published" in line for line in lines), lines

        status = _run(repo_root, "--config", str(config), "discover", "status")
        assert status.returncode == 0, status.stderr
        assert "ceara                es-s2-c1                 2025-07-31T13:03:27" in status.stdout
        assert "scenes: published=10" in status.stdout

        bad = _run(repo_root, "--config", str(config), "backfill", "--city", "atlantis",
                   "--start", "2025-07-01", "--end", "2025-07-31")
        assert bad.returncode == 2 and "unknown city 'atlantis'" in bad.stderr
    db = Database(db_url)
    assert db.scene_counts() == {"published": 10}
    db.dispose()
