"""Offline replay of a stream through the production reader, change models and state.

No bus, database or alerting: what the inference worker does to the city state, scene by
scene, in acquisition order (the order ``urban-monitor run`` publishes them), with the
same discovery filter (scene cloud cover) and the same minimum clear fraction. It exists to
calibrate the state's parameters cheaply on streams of training cities:

* scenes read once onto the grid are cached on disk (``<cache>/scenes/*.npz``);
* with ``record=True`` each scene's p(change) is kept (float16; S1 scenes' too when radar
  carries no weight and the worker would not run the S1 model) so that later replays with
  other *lifecycle* parameters and modality weights reuse it (``p_cache``) instead of running the model — an
  approximation (the references, hence p, depend a little on the parameters) that makes a
  parameter search affordable; the full pipeline benchmark is the final judge.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from monitor.domain.state import CityState, Observation, StateParams
from monitor.domain.vocabulary import UNIX_DAY_OFFSET
from monitor.pipeline.inference import predict_change
from monitor.streams.archive import StreamArchive

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
S2_ASSETS = {b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22", "scl")}


@dataclass
class Scene:
    scene_id: str
    modality: str
    orbit: str | None
    acquired: date
    values: np.ndarray
    valid: np.ndarray


def stream_scenes(archive: StreamArchive, cache_dir: Path | None = None, *,
                  max_cloud_cover: float = 80.0, min_valid_fraction: float = 0.005,
                  ) -> Iterator[Scene]:
    """The stream's usable scenes on its grid, in acquisition order (as the worker reads
    them), cached under ``cache_dir/scenes/<build>`` when given (values as float16, also on
    the pass that fills the cache)."""
    from monitor.adapters.raster import RasterioSceneReader
    from monitor.domain.normalisation import s1_from_linear
    from monitor.domain.scenes import scene_from_item

    reader = RasterioSceneReader()
    # one folder per build of the stream: item ids repeat across seeds and parameters
    build = str(archive.manifest.get("param_hash", "unversioned"))[:16]
    folder = cache_dir / "scenes" / build if cache_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for item in archive.items():
        s2 = item["collection"].startswith("sentinel-2")
        if s2 and float(item["properties"].get("eo:cloud_cover", 0)) > max_cloud_cover:
            continue
        path = folder / f"{item['id']}.npz" if folder is not None else None
        if path is not None and path.exists():
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                values = z["values"].astype(np.float32)
                valid = z["valid"]
        else:
            scene = scene_from_item(
                item, city_id=archive.city, provider="streams", stac_api="file://",
                collection=item["collection"], modality="s2" if s2 else "s1",
                asset_keys=S2_ASSETS if s2 else {"vv": "vv"})
            if s2:
                raster = reader.read_s2(scene, archive.grid)
                values, orbit = raster.values, None
            else:
                raster = reader.read_s1(scene, archive.grid, ("vv",))
                values = s1_from_linear(raster.values[:1])
                orbit = f"{scene.orbit_state or 'unknown'}-{scene.relative_orbit or 0}"
            valid = raster.valid
            # what the cache keeps, so a cold pass and every later one see the same values
            values = values.astype(np.float16).astype(np.float32)
            meta = {"id": scene.item_id, "modality": scene.modality, "orbit": orbit,
                    "acquired": scene.acquired.date().isoformat()}
            if path is not None:  # written whole, then moved: concurrent readers are safe
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.part.npz")
                np.savez(tmp, values=values.astype(np.float16), valid=valid,
                         meta=json.dumps(meta))
                os.replace(tmp, path)
        if float(valid.mean()) < min_valid_fraction:
            continue
        yield Scene(meta["id"], meta["modality"], meta["orbit"],
                    date.fromisoformat(meta["acquired"]), values, valid)


def load_predictors(s2: str, s1: str | None, dual: str | None = None) -> dict[str, Any]:
    """onnxruntime models by shipped name or path: {"s2": .., "s1": .., "dual": ..}."""
    from monitor.adapters.onnx_model import OnnxChangeModel

    out: dict[str, Any] = {"s2": OnnxChangeModel.load(s2)}
    if s1:
        out["s1"] = OnnxChangeModel.load(s1)
    if dual:
        out["dual"] = OnnxChangeModel.load(dual)
    return out


def _fold_stream(archive: StreamArchive, params: StateParams, models: dict[str, Any],
                 cache_dir: Path | None, p_cache: dict[str, np.ndarray] | None, record: bool,
                 ) -> tuple[CityState, dict[str, np.ndarray], dict[int, dict[str, int]]]:
    """Fold every scene into a fresh state: the state, the recorded p per scene (with
    ``record``) and every status each site was reported with (and the first day it was,
    :func:`note_reports`)."""
    state = CityState.create(archive.grid, params)
    recorded: dict[str, np.ndarray] = {}
    reported_ever: dict[int, dict[str, int]] = {}
    for scene in stream_scenes(archive, cache_dir):
        obs = Observation(scene.scene_id, scene.modality, scene.orbit,  # type: ignore[arg-type]
                          scene.acquired, scene.values, scene.valid)
        p = None
        if p_cache is not None:
            cached = p_cache.get(scene.scene_id)
            p = None if cached is None else cached.astype(np.float32)
        else:
            p, _ = predict_change(state, obs, s2_model=models["s2"], s1_model=models.get("s1"),
                                  dual_model=models.get("dual"))
        if record and p is not None:
            recorded[scene.scene_id] = p.astype(np.float16)
        elif (record and p is None and obs.modality == "s1" and models.get("s1") is not None
              and p_cache is None):
            # radar carries no weight in these parameters, so the worker runs no S1 model;
            # its p is still recorded (not folded in) so that a search can try S1 weights
            inputs = state.model_inputs(obs)
            if inputs is not None:
                recorded[scene.scene_id] = models["s1"].predict(*inputs).astype(np.float16)
        result = state.apply(replace(obs, p_change=p))
        note_reports(reported_ever, result.sites, obs.acquired)
    return state, recorded, reported_ever


def note_reports(reported_ever: dict[int, dict[str, int]], sites: Any, acquired: Any) -> None:
    """Remember, per site, each status it was reported with and the first state day it
    was (the scene's acquisition day): the alert's revisions, as far as scoring needs."""
    from monitor.domain.vocabulary import date_to_day

    day = date_to_day(acquired)
    for site in sites:
        reported_ever.setdefault(site.site_id, {}).setdefault(site.status, day)


def replay_stream(archive: StreamArchive, params: StateParams, models: dict[str, Any], *,
                  cache_dir: Path | None = None, p_cache: dict[str, np.ndarray] | None = None,
                  record: bool = False) -> tuple[CityState, dict[str, np.ndarray]]:
    """Fold every scene into a fresh state; returns it and (with ``record``) each scene's p."""
    state, recorded, _ = _fold_stream(archive, params, models, cache_dir, p_cache, record)
    return state, recorded


def site_alerts(state: CityState, reported_ever: dict[int, dict[str, int]]) -> list[Any]:
    """The state's reported sites as the alerts they become (last revision each), with
    their footprints on the grid: what ``score_alerts`` takes. ``reported_ever``: per site,
    the statuses it was reported with and the first state day of each
    (:func:`note_reports`); the first provisional-or-confirmed day is the early warning."""
    from monitor.domain.alert_scoring import WARNING_STATUSES, ScoredAlert
    from monitor.domain.sites import site_footprint
    offset = UNIX_DAY_OFFSET
    out = []
    status, site = state.status, state.to_arrays()["site"]
    for summary in state.sites.values():
        if not summary.reported:
            continue
        mask = np.zeros(state.grid.shape, dtype=bool)
        r0, c0, r1, c1 = summary.bbox
        if summary.n_pixels:
            mask[r0:r1, c0:c1] = site_footprint(status, site, summary)

        def day(d: int) -> int | None:
            return d + offset if d else None

        statuses = reported_ever.get(summary.site_id, {})
        warned = [d for s, d in statuses.items() if s in WARNING_STATUSES]
        out.append(ScoredAlert(
            alert_id=str(summary.site_id), status=summary.status, mask=mask,
            change_day=day(summary.change_day), confirmed_day=day(summary.confirm_day),
            first_day=day(summary.first_day), ever_provisional=bool(warned),
            warning_day=day(min(warned)) if warned else None))
    return out


def replay_and_score(archive: StreamArchive, params: StateParams, models: dict[str, Any], *,
                     cache_dir: Path | None = None, p_cache: dict[str, np.ndarray] | None = None,
                     record: bool = False) -> tuple[Any, CityState, dict[str, np.ndarray]]:
    """Replay, then score the sites as alerts (the pipeline's alerts are the state's
    reported sites, one to one)."""
    from datetime import timedelta

    from monitor.domain.alert_scoring import score_alerts
    from monitor.streams.simulate import to_epoch_days

    state, recorded, reported_ever = _fold_stream(archive, params, models, cache_dir, p_cache,
                                                  record)
    baseline_end = to_epoch_days(archive.start + timedelta(days=params.baseline_days))
    score = score_alerts(archive.change_truth(), site_alerts(state, reported_ever),
                         scored=archive.inside(), pixel_area_m2=archive.grid.pixel_size ** 2,
                         period=archive.period_days(), baseline_end=baseline_end)
    return score, state, recorded
