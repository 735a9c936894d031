"""The real-imagery stream benchmark: labelled cities' streams through the real pipeline.

    urban-monitor evaluate streams --data ../shared/data/oscd --s1 ../shared/data/oscd-s1 \
        [--city paris --city pisa] [--models var/models/folds] [--out var/streams]

Per city: build (or reuse) its stream (``monitor.streams.archive``), serve it with a real
STAC API (``rustac serve``), and run ``urban-monitor run`` over the whole stream exactly as
a new user would — backfill, discovery, inference (rasterio + onnxruntime), the change
state, alerting, the database — on the embedded bus. The alerts that reached the alerts
topic (their last revision each) are then scored against the truth
(``monitor.domain.alert_scoring``), next to the state's own pixels.

Leave cities out: with ``--models DIR`` each city is run with the models (``*.onnx`` +
card in a sub-folder of DIR) whose card does not list it among its training cities; a
city every candidate has seen is run with the shipped models and flagged
``seen in training`` (and left out of the pooled leave-cities-out row).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from monitor.domain.alert_scoring import AlertScore, ScoredAlert, score_alerts
from monitor.domain.vocabulary import UNIX_DAY_OFFSET
from monitor.errors import StreamError
from monitor.settings import Settings
from monitor.streams.archive import StreamArchive
from monitor.streams.simulate import to_epoch_days

log = logging.getLogger(__name__)

STREAM_PROVIDER = "streams"
S2_ASSETS = {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "swir16": "swir16",
             "swir22": "swir22", "scl": "scl"}


@dataclass
class ModelChoice:
    """The models one city is run with, and whether they saw the city in training."""

    s2: str
    s1: str
    dual: str | None = None
    folder: str = "shipped"
    seen_in_training: bool = False


@dataclass
class CityResult:
    city: str
    models: ModelChoice
    score: AlertScore
    state_score: dict[str, Any] = field(default_factory=dict)
    scenes: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    model_versions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"city": self.city, "models": vars(self.models), "score": self.score.to_dict(),
                "state_score": self.state_score, "scenes": self.scenes, "alerts": self.alerts,
                "stage_seconds": self.stage_seconds, "seconds": self.seconds,
                "model_versions": self.model_versions}


def _card_cities(onnx_path: Path) -> set[str]:
    card = onnx_path.with_suffix("").with_suffix(".card.json")
    if not card.is_file():
        card = onnx_path.parent / (onnx_path.stem + ".card.json")
    if not card.is_file():
        return set()
    data = json.loads(card.read_text())
    return set(data.get("training", {}).get("cities", []))


def choose_models(city: str, models_dir: Path | None, settings: Settings) -> ModelChoice:
    """Leave the city out: the first model folder under ``models_dir`` (sorted) whose S2
    model never trained on ``city``; else the configured (shipped) models, flagged."""
    from monitor.adapters.onnx_model import OnnxChangeModel

    if models_dir is not None:
        if not models_dir.is_dir():
            raise StreamError(f"model folder {models_dir} does not exist",
                              "give --models a folder with one sub-folder per fold model set")
        for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            s2 = folder / "change_s2.onnx"
            if not s2.is_file() or city in _card_cities(s2):
                continue
            s1 = folder / "change_s1.onnx"
            dual = folder / "change_dual.onnx"
            return ModelChoice(
                s2=str(s2),
                s1=str(s1) if s1.is_file() and city not in _card_cities(s1) else settings.models.s1,
                dual=str(dual) if dual.is_file() and city not in _card_cities(dual) else None,
                folder=folder.name)
    shipped = OnnxChangeModel.load(settings.models.s2)
    return ModelChoice(s2=settings.models.s2, s1=settings.models.s1, dual=settings.models.dual,
                       folder="shipped",
                       seen_in_training=city in set(shipped.info.train_cities))


def stream_settings(base: Settings, archive: StreamArchive, stac_url: str, run_dir: Path,
                    models: ModelChoice, state_params: dict[str, Any] | None = None) -> Settings:
    """The settings a new user would write for this city: one STAC provider (the served
    stream), its S2 and S1 collections, the city's footprint, a fresh database and state."""
    data = base.model_dump()
    data["database"]["url"] = f"sqlite:///{run_dir / 'urban-monitor.db'}"
    data["state"]["url"] = str(run_dir / "state")
    if state_params is not None:
        data["state"]["params"] = dict(state_params)
    data["bus"]["kind"] = "embedded"
    collections: dict[str, Any] = {"sentinel-2-l2a": {"modality": "s2", "assets": S2_ASSETS}}
    sources: list[dict[str, Any]] = [{
        "name": "s2-streams", "provider": STREAM_PROVIDER, "collection": "sentinel-2-l2a",
        "interval_minutes": 1440, "lookback_days": 10,
        "max_cloud_cover": next((s.max_cloud_cover for s in base.sources
                                 if s.max_cloud_cover is not None), 80)}]
    if "sentinel-1-rtc" in archive.collection_paths:
        collections["sentinel-1-rtc"] = {"modality": "s1", "assets": {"vv": "vv"}}
        sources.append({"name": "s1-streams", "provider": STREAM_PROVIDER,
                        "collection": "sentinel-1-rtc", "interval_minutes": 1440,
                        "lookback_days": 10, "s1_polarizations": ["VV"]})
    data["providers"] = {STREAM_PROVIDER: {"url": stac_url, "signing": "none",
                                           "collections": collections}}
    data["sources"] = sources
    data["cities"] = [{"id": archive.city, "name": f"{archive.city} (OSCD stream)",
                       "geometry": dict(archive.aoi.__geo_interface__)}]
    data["models"]["s2"] = models.s2
    data["models"]["s1"] = models.s1
    if "dual" in data["models"]:
        data["models"]["dual"] = models.dual
    data["logging"]["level"] = base.logging.level
    return Settings(**data)


def rasterise_alerts(alerts: list[Any], archive: StreamArchive) -> list[ScoredAlert]:
    """The last revision of every alert (AlertData) as a mask on the stream's grid (with
    the day each became a warning, from the stream's item dates)."""
    from monitor.adapters.vectorise import scored_alerts

    days = {it["id"]: date.fromisoformat(it["properties"]["datetime"][:10])
            for it in archive.items()}
    return scored_alerts(alerts, archive.grid, scene_days=days)


def _state_score(run_dir: Path, archive: StreamArchive, city: str) -> dict[str, Any]:
    from monitor.adapters.state_store import StateStore
    from monitor.domain.scoring import ChangePrediction, score_change

    state = StateStore(str(run_dir / "state")).load(city)
    if state is None:
        return {}
    offset = UNIX_DAY_OFFSET

    def epoch(days: np.ndarray) -> np.ndarray:
        d = days.astype(np.int32)
        return np.where(d > 0, d + offset, 0).astype(np.int32)

    inside = archive.inside()
    truth = archive.change_truth()
    prediction = ChangePrediction(confirmed=(state.status == 3) & inside,
                                  change_date=epoch(state.change_day),
                                  confirmation_date=epoch(state.confirm_day))
    s = score_change(truth, prediction, state.grid.pixel_size ** 2, archive.period_days())
    keep = ("pixel_precision", "pixel_recall", "pixel_f1", "object_precision", "object_recall",
            "object_f1", "time_error_median_days", "delay_median_days")
    return {k: round(float(v), 3) for k, v in s.to_dict().items() if k in keep}


def run_city(archive: StreamArchive, base: Settings, run_dir: Path, models: ModelChoice, *,
             state_params: dict[str, Any] | None = None, progress: bool = True) -> CityResult:
    """Serve the stream, run the whole period through the pipeline, score the alerts."""
    import shutil

    from monitor.adapters.bus_embedded import EmbeddedBus
    from monitor.adapters.stac_server import StacServer
    from monitor.pipeline.run import run_period
    from monitor.pipeline.runtime import build_runtime

    t0 = time.perf_counter()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    with StacServer(list(archive.collection_paths.values()),
                    list(archive.item_collection_paths.values())) as server:
        settings = stream_settings(base, archive, server.url, run_dir, models, state_params)
        runtime = build_runtime(settings, bus=EmbeddedBus(settings.bus.partitions))
        try:
            start = datetime.combine(archive.start, datetime.min.time(), tzinfo=UTC)
            end = datetime.combine(archive.end, datetime.max.time(), tzinfo=UTC)
            summary = run_period(runtime, archive.city, start, end, progress=progress,
                                 collect_alert_events=True)
        finally:
            runtime.close()
    alerts = rasterise_alerts(summary.alert_events, archive)
    from monitor.domain.state import StateParams

    params = StateParams.from_dict(settings.state.params)
    baseline_end = to_epoch_days(archive.start + timedelta(days=params.baseline_days))
    score = score_alerts(archive.change_truth(), alerts, scored=archive.inside(),
                         pixel_area_m2=archive.grid.pixel_size ** 2,
                         period=archive.period_days(), baseline_end=baseline_end)
    versions = sorted({a.model_version for a in summary.alert_events})
    return CityResult(city=archive.city, models=models, score=score,
                      state_score=_state_score(run_dir, archive, archive.city),
                      scenes=summary.scenes, alerts=summary.alerts,
                      stage_seconds=summary.stage_seconds,
                      seconds=round(time.perf_counter() - t0, 1), model_versions=versions)


def pooled(results: list[CityResult], *, unseen_only: bool = True) -> AlertScore:
    total = AlertScore()
    for r in results:
        if unseen_only and r.models.seen_in_training:
            continue
        total.add(r.score)
    return total


_COLUMNS = (("object_precision", "obj P"), ("object_recall", "obj R"), ("object_f1", "obj F1"),
            ("pixel_f1", "px F1"), ("time_error_median_days", "ToC err d"),
            ("delay_median_days", "delay d"), ("warning_delay_median_days", "warning d"),
            ("false_alerts_per_km2_year", "FA/km2/yr"),
            ("retracted_share", "retracted"), ("confirmed_before_change", "conf. before change"))


def format_table(results: list[CityResult]) -> str:
    """Markdown: one row per city, then the pooled rows."""
    head = "| city | models | " + " | ".join(c for _, c in _COLUMNS) + " | sites found | alerts ever / retracted |"
    lines = [head, "|" + "---|" * (len(_COLUMNS) + 4)]

    def row(name: str, models: str, s: AlertScore) -> str:
        f = s.figures()
        cells = [f"{f[k]:.3g}" if isinstance(f[k], float) else str(f[k]) for k, _ in _COLUMNS]
        return (f"| {name} | {models} | " + " | ".join(cells)
                + f" | {s.sites_found}/{s.n_sites} | {s.alerts_ever} / {s.retracted_final} |")

    for r in results:
        tag = r.models.folder + (" (seen in training)" if r.models.seen_in_training else "")
        lines.append(row(r.city, tag, r.score))
    unseen = [r for r in results if not r.models.seen_in_training]
    if unseen:
        lines.append(row(f"**pooled, {len(unseen)} unseen**", "leave-cities-out", pooled(results)))
    if len(unseen) != len(results):
        lines.append(row(f"pooled, all {len(results)}", "mixed", pooled(results, unseen_only=False)))
    return "\n".join(lines)
