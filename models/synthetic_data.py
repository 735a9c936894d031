"""Training pairs from a synthetic archive (``urban-monitor synthetic generate``).

The synthetic archive is a city simulated over years with its ground truth (clearing and
built-up dates per pixel, ``truth/``). Any two clear Sentinel-2 L2A scenes of it make an
OSCD-like pair: the label is "changed between the two dates" (cleared or built up in
between), exactly what the OSCD labels mean. This is an *addition* to the real OSCD data
(``--dataset oscd+synthetic``) or a stand-alone set for smoke runs (``--dataset
synthetic``); real data stays the reference the model card reports on.

Pairs become :class:`models.oscd.CityPair` (no Sentinel-1: the S1 and dual networks train on
the real OSCD S1 only), with every pixel that is not clear on both dates (SCL cloud, shadow,
no data) set to 0 so that ``CityPair.valid`` leaves it out of the loss.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from models.oscd import CityPair, DatasetError
from monitor.adapters.raster import RasterioSceneReader
from monitor.domain.grid import CityGrid
from monitor.domain.scenes import scene_from_item
from monitor.errors import ItemError, SyntheticArchiveError
from monitor.synthetic.landscape import to_epoch_days

log = logging.getLogger(__name__)

S2_COLLECTION = "sentinel-2-l2a"
# The archive's S2 asset keys (the production reader reads them in the networks' band order).
S2_ASSETS = {b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22", "scl")}


def _read_scene(
    item: dict[str, Any], grid: CityGrid, reader: RasterioSceneReader
) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (6, H, W) and clear mask of one S2 item, read as the inference worker
    reads a scene (``RasterioSceneReader.read_s2``: BOA offset, SCL mask, city grid)."""
    try:
        scene = scene_from_item(
            item,
            city_id="synthetic",
            provider="synthetic",
            stac_api="file://",
            collection=S2_COLLECTION,
            modality="s2",
            asset_keys=S2_ASSETS,
        )
    except ItemError as exc:
        raise DatasetError(
            f"synthetic item {item.get('id')} cannot be read: {exc}",
            "regenerate the archive with 'urban-monitor synthetic generate'",
        ) from exc
    raster = reader.read_s2(scene, grid)
    return np.nan_to_num(raster.values, nan=0.0), raster.valid


def load_synthetic_pairs(
    archive_dir: Path | str,
    *,
    pairs: int = 6,
    min_gap_days: int = 180,
    max_cloud: float = 30.0,
    seed: int = 0,
) -> list[CityPair]:
    """``pairs`` (earlier, later) clear S2 scene pairs of the archive with their change label.

    Scenes with more than ``max_cloud`` % cloud are not used; the two dates of a pair are at
    least ``min_gap_days`` apart (changes take months to show); pairs are drawn with ``seed``.
    """
    from monitor.synthetic.archive import load_archive

    try:
        archive = load_archive(archive_dir)
    except (SyntheticArchiveError, OSError, ValueError, KeyError) as exc:
        raise DatasetError(
            f"{archive_dir} is not a synthetic archive ({exc})",
            "pass --data pointing at a folder made by 'urban-monitor synthetic generate'",
        ) from exc
    items = [
        it for it in archive.items(S2_COLLECTION)
        if float(it["properties"].get("eo:cloud_cover", 100.0)) <= max_cloud
    ]  # fmt: skip
    days = [to_epoch_days(date.fromisoformat(it["properties"]["datetime"][:10])) for it in items]
    candidates = [
        (i, j) for i in range(len(items)) for j in range(i + 1, len(items))
        if days[j] - days[i] >= min_gap_days
    ]  # fmt: skip
    if not candidates:
        raise DatasetError(
            f"synthetic archive {archive_dir} has no two S2 scenes with <= {max_cloud} % cloud "
            f"at least {min_gap_days} days apart",
            "generate a longer archive (--years) or pass a larger --max-cloud",
        )
    rng = np.random.default_rng(seed)
    chosen = [
        candidates[k]
        for k in rng.choice(len(candidates), min(pairs, len(candidates)), replace=False)
    ]
    with rasterio.open(archive.truth.change_date) as src:
        cleared = src.read(1).astype(np.int64)
    with rasterio.open(archive.truth.built_date) as src:
        built = src.read(1).astype(np.int64)
    reader = RasterioSceneReader()
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for i, j in sorted(chosen):
        for k in (i, j):
            if k not in cache:
                cache[k] = _read_scene(items[k], archive.grid, reader)
        (v1, ok1), (v2, ok2) = cache[i], cache[j]
        d1, d2 = days[i], days[j]
        label = ((cleared > d1) & (cleared <= d2)) | ((built > d1) & (built <= d2))
        both = ok1 & ok2
        out.append(
            CityPair(
                name=f"synthetic-{items[i]['properties']['datetime'][:10]}"
                f"-{items[j]['properties']['datetime'][:10]}",
                s2_t1=np.where(both, v1, 0.0).astype(np.float32),
                s2_t2=np.where(both, v2, 0.0).astype(np.float32),
                label=label.astype(np.uint8),
            )
        )
    log.info("synthetic pairs from %s: %s", archive_dir, [p.name for p in out])
    return out
