"""The load run's setup, shared with the stage benchmark: the synthetic 1 Mpx archive, the
scene events of a city, settings, a warm city state copied to every city, city ids that
spread over the partitions, and small measurements (peak memory, percentiles)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from monitor.errors import ModelError, UrbanMonitorError

log = logging.getLogger(__name__)


REPO_ROOT = Path(__file__).resolve().parents[2]
WARM_CITY_ID = "load-warm"
PROVIDER = "synthetic"
SOURCE = "load"
S2_COLLECTION = "sentinel-2-l2a"
S1_COLLECTION = "sentinel-1-rtc"
COLLECTIONS: dict[str, dict[str, Any]] = {
    S2_COLLECTION: {"modality": "s2", "assets": {b: b for b in (
        "blue", "green", "red", "nir", "swir16", "swir22", "scl")}},
    S1_COLLECTION: {"modality": "s1", "assets": {"vv": "vv", "vh": "vh"}},
}
MAX_CLOUD_COVER = 95.0  # as the demo's S2 source: hopeless scenes are not even published
FALLBACK_MODELS = {"s2": "var/models/folds/fold0/change_s2.onnx",
                   "s1": "var/models/folds/fold0/change_s1.onnx"}


# -- shared pieces (also used by the stage benchmark) -------------------------------------
def ensure_archive(work_dir: Path, *, size_km: float = 10.0, seed: int = 11,
                   start: date = date(2019, 1, 1), end: date = date(2019, 12, 31),
                   progress: bool = True) -> Any:
    """The cached synthetic archive of one ``size_km`` city (10 km = 1000 x 1000 px)."""
    from monitor.synthetic.archive import generate_archive
    from monitor.synthetic.params import ArchiveParams

    params = ArchiveParams(size_km=size_km, start=start, end=end, seed=seed)
    return generate_archive(work_dir / "archive", params, progress=progress)


def resolve_models() -> dict[str, str]:
    """The shipped models when they are there, else the fold-0 models of the model run.
    ``URBAN_MONITOR_MODELS__S2/S1`` still win (the environment beats the settings file)."""
    from monitor.adapters.onnx_model import OnnxChangeModel

    out = {}
    for modality in ("s2", "s1"):
        try:
            OnnxChangeModel.load(f"change_{modality}")
            out[modality] = f"change_{modality}"
        except (ModelError, OSError, ValueError):
            out[modality] = str(REPO_ROOT / FALLBACK_MODELS[modality])
    return out


def city_entry(city_id: str, archive: Any) -> dict[str, Any]:
    return {"id": city_id, "name": f"Load city {city_id}",
            "geometry": dict(archive.aoi.__geo_interface__)}


def provider_entry() -> dict[str, Any]:
    return {"url": "http://127.0.0.1:0/", "signing": "none", "collections": COLLECTIONS}


def scene_events(archive: Any, city_id: str, *, after: date | None = None,
                 before: date | None = None,
                 modalities: Sequence[str] = ("s2", "s1")) -> list[Any]:
    """The archive's wanted scenes (of ``modalities``) as SceneEvents for ``city_id``, in
    acquisition order."""
    from monitor.domain.events import scene_event
    from monitor.domain.scenes import filter_reason, item_datetime, scene_from_item

    events = []
    for collection, spec in COLLECTIONS.items():
        if spec["modality"] not in modalities:
            continue
        for item in archive.items(collection):
            acquired = item_datetime(item).date()
            if (after is not None and acquired < after) or (before is not None
                                                            and acquired >= before):
                continue
            if filter_reason(item, modality=spec["modality"], max_cloud_cover=MAX_CLOUD_COVER,
                             polarizations=["VV", "VH"]) is not None:
                continue
            scene = scene_from_item(item, city_id=city_id, provider=PROVIDER,
                                    stac_api=f"file://{archive.root}",
                                    collection=collection, modality=spec["modality"],
                                    asset_keys=spec["assets"], polarizations=["VV", "VH"])
            events.append(scene_event(scene, source="urban-monitor/load"))
    events.sort(key=_scene_order)
    return events


def _scene_order(event: Any) -> tuple[Any, str]:
    return (event.data.acquired, event.data.item_id)


def register_scene(db: Any, event: Any) -> bool:
    """Record a scene in the registry as discovery does (``discovered_at`` = now)."""
    scene = event.data
    return bool(db.register_scene(event.id, city_id=scene.city_id, source=SOURCE,
                                  provider=scene.provider, collection=scene.collection,
                                  item_id=scene.item_id, modality=scene.modality,
                                  acquired=scene.acquired,
                                  event_json=event.to_json().decode("utf-8")))


def local_settings(archive: Any, folder: Path, city_ids: Sequence[str]) -> Any:
    """Embedded settings (in-process bus, SQLite, local state) for ``city_ids``."""
    from monitor.settings import Settings

    models = resolve_models()
    values: dict[str, Any] = {
        "cities": [city_entry(c, archive) for c in city_ids],
        "database": {"url": f"sqlite:///{folder / 'urban-monitor.db'}"},
        "state": {"url": str(folder / "state")},
        "models": {"s2": models["s2"], "s1": models["s1"], "threads": 1},
        "providers": {PROVIDER: provider_entry()}}
    return Settings(**values)  # validated as the settings file would be


def ensure_warm_state(archive: Any, work_dir: Path, until: date, *,
                      progress: bool = True) -> Path:
    """A state store holding city ``load-warm`` after every scene acquired before ``until``
    (embedded bus, SQLite, the real InferenceWorker). Cached by archive, models and the
    state parameters (a state keeps the parameters it was created with)."""
    from tqdm import tqdm

    from monitor.adapters.bus_embedded import EmbeddedBus
    from monitor.pipeline.runtime import build_runtime, build_worker

    folder = work_dir / "warm"
    models = resolve_models()
    from monitor.domain.state import StateParams

    key = {"archive": archive.param_hash, "until": until.isoformat(), "models": models,
           "state_params": asdict(StateParams())}
    meta_path = folder / "warm.json"
    if meta_path.exists() and json.loads(meta_path.read_text()).get("key") == key:
        return folder / "state"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    settings = local_settings(archive, folder, [WARM_CITY_ID])
    runtime = build_runtime(settings, bus=EmbeddedBus(settings.bus.partitions))
    try:
        worker = build_worker(runtime)
        events = scene_events(archive, WARM_CITY_ID, before=until)
        outcomes: dict[str, int] = {}
        for event in tqdm(events, desc="warm state", unit="scene", disable=not progress):
            register_scene(runtime.db, event)
            outcome = worker.handle(event)
            outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
    finally:
        runtime.close()
    meta_path.write_text(json.dumps({"key": key, "scenes": len(events), "outcomes": outcomes,
                                     "times": worker.times.as_dict()}, indent=1))
    return folder / "state"


def copy_state(source_store: Path, target_url: str, city_ids: Iterable[str]) -> None:
    from monitor.adapters.state_store import StateStore

    state = StateStore(str(source_store)).load(WARM_CITY_ID)
    if state is None:
        raise UrbanMonitorError(f"the warm state under {source_store} holds no city "
                                f"{WARM_CITY_ID}", f"delete {source_store.parent} and run again")
    target = StateStore(target_url)
    for city_id in city_ids:
        target.save(city_id, state)


def spread_city_ids(n: int, partitions: int, prefix: str = "load-city") -> list[str]:
    """``n`` city ids whose Kafka keys fall into distinct partitions (as far as there are
    partitions), so that N workers share the cities evenly. With the few cities of a load
    run, hashing alone would often put two cities on one partition and leave a worker
    idle; a real deployment has many more cities than partitions."""
    from kafka.partitioner.default import murmur2

    chosen: list[str] = []
    counts = [0] * partitions
    i = 0
    while len(chosen) < n:
        city_id = f"{prefix}-{i:03d}"
        partition = (murmur2(city_id.encode()) & 0x7FFFFFFF) % partitions  # as kafka-python
        if counts[partition] == min(counts):
            chosen.append(city_id)
            counts[partition] += 1
        i += 1
    return chosen


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size of ``pid`` in KiB (``VmHWM`` in /proc), None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
