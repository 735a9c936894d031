"""The inference step: SceneEvent -> city grid -> masks -> model -> state -> ChangeEvent.

Exactly-once in effect, with at-least-once delivery:
1. the state remembers which scene events it has applied; a redelivered scene is not
   applied again, but its ChangeEvent is published again (same deterministic id, so
   consumers drop the copy) — this covers a crash after persist and before publish;
2. the state is persisted atomically (new version, then pointer) before the ChangeEvent
   is published and before the offset is committed;
3. the offset is committed by the consume loop only after this handler returns.
A crash anywhere therefore either redoes the scene from the previous state version or
finds it applied: the final state and the set of change events are the same.

Outcomes other than "processed" are recorded in the scene registry with a reason:
``skipped`` (misses the city, no clear pixel, late beyond the state's window) and
``dead_lettered`` (unreadable asset, unexpected CRS), via the consume loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.domain.city import City
from monitor.domain.events import (
    ChangeData,
    CloudEvent,
    SceneData,
    change_event,
)
from monitor.domain.normalisation import s1_from_linear
from monitor.domain.records import RegisteredScene
from monitor.domain.sites import SiteSummary
from monitor.domain.state import CityState, Observation, StateParams
from monitor.domain.vocabulary import ALERT_STATUSES
from monitor.errors import SceneReadError
from monitor.ports import (
    Bus,
    ChangeModel,
    DualChangeModel,
    Message,
    SceneReader,
    SceneRegistry,
    SceneSigner,
    SiteReporter,
    StatePublisher,
    StateRepository,
)

log = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over scenes (for the demo summary and benchmarks)."""

    read: float = 0.0
    mask: float = 0.0
    infer: float = 0.0
    update: float = 0.0
    persist: float = 0.0
    publish: float = 0.0
    scenes: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


@dataclass
class InferenceOutcome:
    scene_event_id: str
    status: str  # processed | duplicate | skipped
    reason: str | None = None
    change: CloudEvent | None = None


@dataclass
class InferenceWorker:
    """Handles SceneEvents for the cities it is given. One instance per worker process
    (built by ``monitor.pipeline.runtime.build_worker``; tests give it fakes of the ports)."""

    bus: Bus
    registry: SceneRegistry
    store: StateRepository
    reader: SceneReader
    s2_model: ChangeModel
    s1_model: ChangeModel | None
    cities: dict[str, City]
    changes_topic: str
    site_reporter: SiteReporter | None = None
    # The dual-stream S1+S2 network (the seed's fusion): an S2 scene with radar context
    # (an orbit's reference and current 3-month means) is scored by it, else by s2_model.
    dual_model: DualChangeModel | None = None
    # provider name -> signer (e.g. Planetary Computer SAS tokens), applied right before
    # the assets are opened: events carry unsigned hrefs because tokens expire.
    signers: dict[str, SceneSigner] = field(default_factory=dict)
    state_params: StateParams = field(default_factory=StateParams)
    # writes the change layers (COGs + STAC item) of saved versions when due (products)
    publisher: StatePublisher | None = None
    min_valid_fraction: float = 0.005
    times: StageTimes = field(default_factory=StageTimes)
    _cache: dict[str, tuple[int, CityState]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- state cache -------------------------------------------------------------------
    def _load_state(self, city: City) -> CityState:
        """The latest persisted state (cached; reloaded when another worker moved it on)."""
        latest = self.store.latest_version(city.id)
        cached = self._cache.get(city.id)
        if cached and cached[0] == latest:
            return cached[1]
        state = self.store.load(city.id) if latest else None
        if state is None:
            state = CityState.create(city.grid, self.state_params)
        self._cache[city.id] = (latest or 0, state)
        return state

    def model_version(self, modality: str) -> str:
        model = self.s2_model if modality == "s2" else (self.s1_model or self.s2_model)
        return model.info.id

    def _predict(self, state: CityState, observation: Observation
                 ) -> tuple[np.ndarray | None, str]:
        return predict_change(state, observation, s2_model=self.s2_model,
                              s1_model=self.s1_model, dual_model=self.dual_model)

    # -- the handler -------------------------------------------------------------------
    def handle(self, event: CloudEvent, message: Message | None = None) -> InferenceOutcome:
        scene = event.data
        assert isinstance(scene, SceneData)
        city = self.cities.get(scene.city_id)
        if city is None:
            raise SceneReadError(scene.item_id, f"names city '{scene.city_id}' which this worker "
                                 "does not know", "add the city to the cities file of every worker")
        with self._lock:  # one scene at a time per worker: the state is not shared
            return self._handle(event, scene, city)

    def _ensure_registered(self, event: CloudEvent, scene: SceneData) -> RegisteredScene | None:
        """The scene's registry entry. A scene published by another tool (not our scheduler)
        is registered here, so its outcome is recorded instead of stalling the partition."""
        registry = self.registry
        entry = registry.scene(event.id)
        if entry is not None:
            return entry
        registry.register_scene(
            event.id, city_id=scene.city_id, source=event.source, provider=scene.provider,
            collection=scene.collection, item_id=scene.item_id, modality=scene.modality,
            acquired=scene.acquired, event_json=event.to_json().decode("utf-8"))
        if registry.scene(event.id) is None:
            raise SceneReadError(
                scene.item_id, f"event {event.id} is not the registered event of this item "
                "(another event id holds it in the scene registry)",
                "publish scenes with the deterministic id of monitor.domain.events.scene_event")
        return None  # new: no previous outcome

    def _handle(self, event: CloudEvent, scene: SceneData, city: City) -> InferenceOutcome:
        previous = self._ensure_registered(event, scene)
        self.registry.mark_scene(event.id, "processing")
        state = self._load_state(city)
        if state.has_applied(event.id):
            log.info("scene %s already applied to %s: re-publishing its change event only",
                     scene.item_id, city.id)
            # the last scene's site reports are kept with the state, so its event is sent
            # again exactly; an older scene's event went out before the next one was read
            last = state.last_scene_id == event.id
            change = self._change_event(event, scene, city, state, valid_fraction=None,
                                        sites=state.last_reported if last else [],
                                        model_version=state.last_model_version if last
                                        else self.model_version(scene.modality))
            self.bus.publish(self.changes_topic, city.id, change.to_json())
            self.registry.mark_scene(event.id, "processed", "duplicate delivery; already applied")
            return InferenceOutcome(event.id, "duplicate", change=change)

        t0 = time.perf_counter()
        signer = self.signers.get(scene.provider)
        to_read = signer.sign_scene(scene) if signer is not None else scene
        raster = self.reader.read(to_read, city.grid)
        t1 = time.perf_counter()
        valid = raster.valid
        if scene.modality == "s1":
            values = s1_from_linear(raster.values[:1])  # the model's unit: scaled dB, VV
            orbit = f"{scene.orbit_state or 'unknown'}-{scene.relative_orbit or 0}"
        else:
            values = raster.values
            orbit = None
        valid_fraction = float(valid.mean())
        t2 = time.perf_counter()
        self.times.read += t1 - t0
        self.times.mask += t2 - t1
        if valid_fraction < self.min_valid_fraction:
            reason = ("scene does not cover the city" if not np.isfinite(raster.values).any()
                      else f"only {valid_fraction:.1%} of the city is clear")
            self.registry.mark_scene(event.id, "skipped", reason)
            log.info("scene %s (%s, %s) of %s: skipped, %s", scene.item_id, scene.modality,
                     f"{scene.acquired:%Y-%m-%d}", city.id, reason)
            return InferenceOutcome(event.id, "skipped", reason)

        observation = Observation(scene_id=event.id, modality=scene.modality, orbit=orbit,
                                  acquired=scene.acquired.date(), values=values, valid=valid,
                                  p_change=None)
        p_change, model_version = self._predict(state, observation)
        t3 = time.perf_counter()
        observation = Observation(scene_id=event.id, modality=scene.modality, orbit=orbit,
                                  acquired=scene.acquired.date(), values=values, valid=valid,
                                  p_change=p_change)
        # Work on a copy: if persisting fails, the cached state must not already hold the
        # scene (a retry would then take it for a duplicate and never persist it).
        state = state.copy()
        result = state.apply(observation)
        state.last_model_version = model_version
        t4 = time.perf_counter()
        if result.outcome in ("late", "skipped"):
            if previous is not None and previous.status == "processed":
                # A redelivery of a scene applied long ago: the state forgets applied ids
                # past the lateness limit, the registry does not. It stays "processed".
                self.registry.mark_scene(event.id, "processed",
                                         "duplicate delivery; applied earlier")
                return InferenceOutcome(event.id, "duplicate", result.reason)
            self.registry.mark_scene(event.id, "skipped", result.reason)
            log.info("scene %s (%s, %s) of %s: skipped, %s", scene.item_id, scene.modality,
                     f"{scene.acquired:%Y-%m-%d}", city.id, result.reason)
            return InferenceOutcome(event.id, "skipped", result.reason)
        version = self.store.save(city.id, state)
        self._cache[city.id] = (version, state)
        t5 = time.perf_counter()
        change = self._change_event(event, scene, city, state, valid_fraction,
                                    sites=result.sites, transitions=result.transitions,
                                    model_version=model_version)
        self.bus.publish(self.changes_topic, city.id, change.to_json())
        t6 = time.perf_counter()
        self.registry.mark_scene(event.id, "processed")
        if self.publisher is not None:
            self.publisher.state_saved(city.id, state)
        data = change.data
        assert isinstance(data, ChangeData)
        log.info("scene %s (%s, %s) of %s: processed, %.0f%% clear, model %s, %d site(s) "
                 "moved%s", scene.item_id, scene.modality, f"{scene.acquired:%Y-%m-%d}",
                 city.id, 100 * valid_fraction, model_version if p_change is not None else
                 "none (baseline/references)", len(data.sites),
                 "".join(f", {n} {k}" for k, n in sorted(result.transitions.items())))
        self.times.infer += t3 - t2
        self.times.update += t4 - t3
        self.times.persist += t5 - t4
        self.times.publish += t6 - t5
        self.times.scenes += 1
        return InferenceOutcome(event.id, "processed", change=change)

    def _change_event(self, event: CloudEvent, scene: SceneData, city: City, state: CityState,
                      valid_fraction: float | None, *, sites: Sequence[SiteSummary],
                      model_version: str | None = None,
                      transitions: dict[str, int] | None = None) -> CloudEvent:
        """ChangeEvent v2: only the sites this scene moved (traced in their windows)."""
        summary = state.summary()
        reports = self.site_reporter(state, sites) if self.site_reporter and sites else []
        data = ChangeData(
            city_id=city.id, scene_event_id=event.id, scene_ids=[scene.item_id],
            modality=scene.modality, acquired=scene.acquired,
            model_version=model_version or self.model_version(scene.modality),
            state_version=int(state.version), valid_fraction=valid_fraction or 0.0,
            pixels={name: int(summary.get(name, 0)) for name in ALERT_STATUSES},
            transitions=dict(transitions or {}), sites=reports)
        return change_event(data)


# Up to this share of an S2 scene's clear pixels may lack a radar reference and still be
# scored by the dual model (neutral radar there); beyond it the S2 model scores them.
RADAR_NEUTRAL_SHARE = 0.05


def predict_change(state: CityState, observation: Observation, *, s2_model: ChangeModel,
                   s1_model: ChangeModel | None = None,
                   dual_model: DualChangeModel | None = None) -> tuple[np.ndarray | None, str]:
    """p(change) of an observation against the state (None: references only) and the id of
    the model that produced it (the worker and the offline stream replay share this).

    S2 with radar context (an orbit seen within 45 days whose reference is built) -> the
    dual-stream model where the orbit covers the pixels; clear pixels without a radar
    reference are scored by the dual model with neutral radar when they are at most
    :data:`RADAR_NEUTRAL_SHARE` of the scene, else by the S2 model; S2 otherwise
    -> the S2 model; S1 -> the S1 model, unless radar carries no weight (then references
    only)."""
    inputs = state.model_inputs(observation)
    s1_or_s2 = s1_model if observation.modality == "s1" and s1_model is not None else s2_model
    version = s1_or_s2.info.id
    if inputs is None:
        return None, version
    reference, current, valid = inputs
    if observation.modality == "s1":
        if s1_model is None or state.params.s1_weight == 0:
            return None, version
        p = s1_model.predict(reference, current, valid)
        return np.where(valid, p, np.nan).astype(np.float32), version
    context = state.s1_context(observation.acquired) if dual_model is not None else None
    if context is not None and dual_model is not None:
        _, s1_ref, s1_cur, s1_valid = context
        fused_valid = valid & s1_valid
        n_valid = max(int(valid.sum()), 1)
        alone = valid & ~fused_valid
        if fused_valid.sum() >= 0.5 * n_valid:
            if alone.sum() <= RADAR_NEUTRAL_SHARE * n_valid:
                # a few pixels without a radar reference (speckle no-data, a swath edge):
                # the dual model scores them too, with neutral radar there (one network)
                p = dual_model.predict_dual(reference, current, s1_ref, s1_cur, valid,
                                            s1_valid=fused_valid)
            else:  # many: the S2 model scores them, over their tiles only
                p = dual_model.predict_dual(reference, current, s1_ref, s1_cur, fused_valid)
                p = np.where(alone, s2_model.predict(reference, current, valid, needed=alone), p)
            return np.where(valid, p, np.nan).astype(np.float32), dual_model.info.id
    p = s2_model.predict(reference, current, valid)
    return np.where(valid, p, np.nan).astype(np.float32), version


def make_scene_handler(worker: InferenceWorker) -> Callable[[CloudEvent, Message], None]:
    def handler(event: CloudEvent, message: Message) -> None:
        worker.handle(event, message)
    return handler

