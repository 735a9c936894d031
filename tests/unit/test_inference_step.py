"""The inference step (``monitor.pipeline.inference.InferenceWorker``) with fakes of every
port: registry, state store, scene reader, change models, signer and bus. No COG, no ONNX,
no database: what is asserted is the step's own logic (registry outcomes, when the model
runs, what is persisted and published, and what a failure leaves behind)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from shapely.geometry import box

from monitor.adapters.vectorise import site_reports
from monitor.domain.city import City
from monitor.domain.events import CHANGE_TYPE, CloudEvent, SceneData, parse_event, scene_event
from monitor.domain.grid import CityGrid
from monitor.domain.scenes import scene_from_item
from monitor.domain.state import StateParams
from monitor.errors import SceneReadError, StateError
from monitor.pipeline.inference import InferenceWorker
from monitor.ports import SceneRaster
from tests.unit.fakes import (
    FakeModel,
    FakeReader,
    MemoryRegistry,
    MemoryStateStore,
    RecordingBus,
    TokenSigner,
)

CHANGES = "urban.changes.v2"
GRID = CityGrid(epsg=32633, origin_x=674_000.0, origin_y=6_580_000.0, width=8, height=6)
AOI = box(17.90, 59.28, 18.16, 59.38)
CITY = City("stockholm", "Stockholm", AOI, GRID)
T0 = datetime(2024, 3, 1, 10, tzinfo=UTC)
# The model sees change in the left half of the city and nowhere else.
CHANGED = np.zeros(GRID.shape, bool)
CHANGED[:, :4] = True
S2_ASSETS = {b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22", "scl")}
# Scenes come every 10 days: the first two fall in the 20-day baseline, and the S2
# reference needs three scenes, so the model runs from the fourth scene on.
PARAMS = StateParams(baseline_days=20, s2_reference_count=3)


def s2_event(n: int, provider: str = "earth-search") -> CloudEvent:
    """The SceneEvent discovery publishes for the n-th S2 acquisition (10 days apart)."""
    item = {
        "type": "Feature", "id": f"S2A_{n:03d}", "collection": "sentinel-2-l2a",
        "geometry": dict(box(17.0, 59.0, 19.0, 60.0).__geo_interface__),
        "properties": {"datetime": (T0 + timedelta(days=10 * n)).isoformat(),
                       "eo:cloud_cover": 5.0, "s2:processing_baseline": "05.10"},
        "assets": {k: {"href": f"https://data.example/{n}/{k}.tif"} for k in S2_ASSETS},
    }
    data = scene_from_item(item, city_id="stockholm", provider=provider,
                           stac_api="https://stac.example", collection="sentinel-2-l2a",
                           modality="s2", asset_keys=S2_ASSETS)
    return scene_event(data)


def s1_event(n: int) -> CloudEvent:
    item = {
        "type": "Feature", "id": f"S1A_{n:03d}", "collection": "sentinel-1-rtc",
        "geometry": dict(box(17.0, 59.0, 19.0, 60.0).__geo_interface__),
        "properties": {"datetime": (T0 + timedelta(days=10 * n + 1)).isoformat(),
                       "sat:orbit_state": "ascending", "sat:relative_orbit": 102,
                       "sar:instrument_mode": "IW", "sar:polarizations": ["VV", "VH"]},
        "assets": {k: {"href": f"https://data.example/{n}/{k}.tif"} for k in ("vv", "vh")},
    }
    data = scene_from_item(item, city_id="stockholm", provider="earth-search",
                           stac_api="https://stac.example", collection="sentinel-1-rtc",
                           modality="s1", asset_keys={"vv": "vv", "vh": "vh"})
    return scene_event(data)


def clear_raster(scene: SceneData, grid: CityGrid) -> SceneRaster:
    """Every pixel clear: S2 reflectance 0.1 in six bands, S1 gamma0 0.05 in VV and VH."""
    n_bands = 6 if scene.modality == "s2" else 2
    value = 0.1 if scene.modality == "s2" else 0.05
    return SceneRaster(values=np.full((n_bands, *grid.shape), value, np.float32),
                       valid=np.ones(grid.shape, bool), bands=tuple(f"b{i}" for i in range(n_bands)))


def cloudy_raster(scene: SceneData, grid: CityGrid) -> SceneRaster:
    raster = clear_raster(scene, grid)
    return SceneRaster(values=raster.values, valid=np.zeros(grid.shape, bool), bands=raster.bands)


def change_in_left_half(reference: np.ndarray, observation: np.ndarray) -> np.ndarray:
    return np.where(CHANGED, 0.99, 0.01)


class Fixture:
    def __init__(self, raster_for=clear_raster) -> None:  # type: ignore[no-untyped-def]
        self.bus = RecordingBus()
        self.registry = MemoryRegistry()
        self.store = MemoryStateStore()
        self.reader = FakeReader(raster_for)
        self.s2 = FakeModel("fake_s2@1.0.0+0000aaaa", change_in_left_half)
        self.s1 = FakeModel("fake_s1@1.0.0+0000bbbb", change_in_left_half)
        self.signer = TokenSigner()
        self.worker = InferenceWorker(
            bus=self.bus, registry=self.registry, store=self.store, reader=self.reader,
            s2_model=self.s2, s1_model=self.s1, cities={"stockholm": CITY},
            changes_topic=CHANGES, signers={"planetary-computer": self.signer},
            state_params=PARAMS, site_reporter=site_reports)

    def register(self, event: CloudEvent) -> None:
        data = event.data
        assert isinstance(data, SceneData)
        self.registry.register_scene(
            event.id, city_id=data.city_id, source="test", provider=data.provider,
            collection=data.collection, item_id=data.item_id, modality=data.modality,
            acquired=data.acquired, event_json=event.to_json().decode())
        self.registry.mark_scene(event.id, "published")

    def changes(self) -> list[CloudEvent]:
        return [parse_event(v, CHANGE_TYPE) for v in self.bus.values(CHANGES)]


def test_scenes_build_the_reference_then_the_model_confirms_the_changed_half() -> None:
    f = Fixture()
    events = [s2_event(n) for n in range(6)]
    for event in events:
        f.register(event)
        assert f.worker.handle(event).status == "processed"
    # The first three scenes only build the S2 reference (baseline, then the reference
    # count): the model runs from the fourth on, against the reference, on the scene.
    assert len(f.s2.calls) == 3
    reference, observation, valid = f.s2.calls[0]
    assert reference.shape == observation.shape == (6, *GRID.shape)
    assert valid is not None and valid.all()
    assert f.s1.calls == []
    # Every processed scene was persisted once and published once, in order.
    assert f.store.latest_version("stockholm") == 6
    changes = f.changes()
    assert [c.data.scene_event_id for c in changes] == [e.id for e in events]
    assert all(c.data.model_version == "fake_s2@1.0.0+0000aaaa" for c in changes)
    assert [c.data.state_version for c in changes] == [1, 2, 3, 4, 5, 6]
    assert f.bus.keys(CHANGES) == ["stockholm"] * 6
    # Three strong observations confirm the changed half; the rest never leaves "none".
    last = changes[-1].data
    assert last.pixels["confirmed"] == int(CHANGED.sum())
    assert last.pixels["first"] == last.pixels["provisional"] == last.pixels["retracted"] == 0
    assert changes[3].data.pixels["first"] == int(CHANGED.sum())  # one strong observation
    state = f.store.load("stockholm")
    assert state is not None and (state.status[~CHANGED] == 0).all()
    # The registry went discovered -> published -> processing -> processed for each.
    assert set(f.registry.statuses().values()) == {"processed"}
    assert [m[1] for m in f.registry.marks if m[0] == events[0].id] == [
        "published", "processing", "processed"]
    assert f.worker.times.scenes == 6


def test_a_redelivered_scene_changes_nothing_and_repeats_its_change_event() -> None:
    f = Fixture()
    events = [s2_event(n) for n in range(4)]
    for event in events:
        f.register(event)
        f.worker.handle(event)
    before = f.store.load("stockholm")
    outcome = f.worker.handle(events[-1])
    assert outcome.status == "duplicate"
    assert f.store.saves == 4  # not persisted again
    after = f.store.load("stockholm")
    assert before is not None and after is not None and after.version == before.version
    changes = f.changes()
    assert len(changes) == 5 and changes[-1].id == changes[-2].id  # same deterministic id
    assert len(f.reader.reads) == 4  # the assets were not read again
    assert f.registry.scene(events[-1].id).status == "processed"  # type: ignore[union-attr]


def test_a_scene_without_clear_pixels_is_skipped_with_a_reason() -> None:
    f = Fixture(raster_for=cloudy_raster)
    event = s2_event(0)
    f.register(event)
    outcome = f.worker.handle(event)
    assert outcome.status == "skipped" and "clear" in (outcome.reason or "")
    entry = f.registry.scene(event.id)
    assert entry is not None and entry.status == "skipped" and entry.reason == outcome.reason
    assert f.store.saves == 0 and f.bus.values(CHANGES) == []


def test_radar_at_weight_zero_feeds_the_references_without_running_the_s1_model() -> None:
    f = Fixture()
    events = [s1_event(n) for n in range(10)]  # more than the S1 reference needs (8)
    for event in events:
        f.register(event)
        assert f.worker.handle(event).status == "processed"
    assert f.worker.state_params.s1_weight == 0
    assert f.s1.calls == [] and f.s2.calls == []
    state = f.store.load("stockholm")
    assert state is not None and state.orbits == ["ascending-102"]
    assert state.reference_for("s1", "ascending-102") is not None
    assert all(c.data.model_version == "fake_s1@1.0.0+0000bbbb" for c in f.changes())


def test_a_failed_save_leaves_the_scene_to_be_processed_again_not_taken_for_a_duplicate() -> None:
    f = Fixture()
    first, event = s2_event(0), s2_event(1)
    for e in (first, event):
        f.register(e)
    f.worker.handle(first)  # the worker now holds version 1 in its cache
    f.store.fail_saves = 1
    with pytest.raises(StateError):
        f.worker.handle(event)
    assert len(f.changes()) == 1  # nothing published before the state is persisted
    assert f.registry.scene(event.id).status == "processing"  # type: ignore[union-attr]
    outcome = f.worker.handle(event)  # the consume loop retries it
    assert outcome.status == "processed"
    assert f.store.latest_version("stockholm") == 2 and len(f.changes()) == 2
    state = f.store.load("stockholm")
    assert state is not None and state.has_applied(event.id)
    assert f.registry.scene(event.id).attempts == 2  # type: ignore[union-attr]


def test_assets_are_signed_right_before_they_are_read() -> None:
    f = Fixture()
    signed = s2_event(0, provider="planetary-computer")
    plain = s2_event(1)
    for event in (signed, plain):
        f.register(event)
        f.worker.handle(event)
    assert f.signer.signed == ["S2A_000"]
    hrefs = [next(iter(scene.assets.values())).href for scene in f.reader.reads]
    assert hrefs[0].endswith("?token") and not hrefs[1].endswith("?token")
    # The published event keeps the unsigned hrefs (tokens expire).
    assert "?token" not in f.registry.scene(signed.id).event_json  # type: ignore[union-attr]


def test_a_scene_published_by_another_tool_is_registered_by_the_worker() -> None:
    f = Fixture()
    event = s2_event(0)  # never registered by a scheduler
    assert f.worker.handle(event).status == "processed"
    entry = f.registry.scene(event.id)
    assert entry is not None and entry.status == "processed" and entry.item_id == "S2A_000"


def test_a_scene_for_an_unknown_city_is_a_permanent_error() -> None:
    f = Fixture()
    data = s2_event(0).data
    assert isinstance(data, SceneData)
    stray = scene_event(data.model_copy(update={"city_id": "atlantis"}))
    with pytest.raises(SceneReadError, match="atlantis"):
        f.worker.handle(stray)
    assert f.reader.reads == [] and f.store.saves == 0


def test_an_s2_scene_after_s1_scenes_is_scored_by_the_fusion_model_and_names_it() -> None:
    from tests.unit.fakes import FakeDualModel

    f = Fixture()
    f.worker.dual_model = FakeDualModel("fake_dual@2.0.0+0000cccc", change_in_left_half)
    # radar first: ten S1 scenes of one orbit build its reference and running mean ...
    for n in range(10):
        event = s1_event(n)
        f.register(event)
        f.worker.handle(event)
    # ... then S2 (radar goes on, a day after each): references for three scenes, then
    # the fusion model scores them
    for n in range(10, 16):
        for event in (s2_event(n), s1_event(n)):
            f.register(event)
            assert f.worker.handle(event).status == "processed"
    dual = f.worker.dual_model
    assert len(dual.calls) == 3 and f.s2.calls == []  # no S2-only run: radar covers it all
    s2_ref, s2_obs, s1_ref, s1_obs = dual.calls[0]
    assert s2_ref.shape == s2_obs.shape == (6, *GRID.shape)
    assert s1_ref.shape == s1_obs.shape == (1, *GRID.shape)
    changes = [c for c in f.changes() if c.data.modality == "s2"]
    assert [c.data.model_version for c in changes[:3]] == ["fake_s2@1.0.0+0000aaaa"] * 3
    assert [c.data.model_version for c in changes[3:]] == ["fake_dual@2.0.0+0000cccc"] * 3
    # the fusion output drives the state: the changed half confirms as one site
    last = changes[-1].data
    assert last.pixels["confirmed"] == int(CHANGED.sum())


def _fused_run(no_radar: np.ndarray) -> Fixture:
    """Ten S1 scenes of one orbit that never sees ``no_radar``, then six S2 scenes (each
    with an S1 scene a day later): the last three are scored with radar context. The S2
    model sees change everywhere, the dual model in the left half."""
    from tests.unit.fakes import FakeDualModel

    def raster(scene: SceneData, grid: CityGrid) -> SceneRaster:
        r = clear_raster(scene, grid)
        if scene.modality == "s1":
            return SceneRaster(values=r.values, valid=~no_radar, bands=r.bands)
        return r

    f = Fixture(raster_for=raster)
    f.s2.p_for = lambda reference, observation: np.full(GRID.shape, 0.99)
    f.worker.dual_model = FakeDualModel("fake_dual@2.0.0+0000cccc", change_in_left_half)
    for n in range(10):
        event = s1_event(n)
        f.register(event)
        f.worker.handle(event)
    for n in range(10, 16):
        for event in (s2_event(n), s1_event(n)):
            f.register(event)
            assert f.worker.handle(event).status == "processed"
    return f


def test_where_radar_misses_many_pixels_the_s2_model_runs_for_those_pixels_only() -> None:
    no_radar = np.zeros(GRID.shape, bool)
    no_radar[:, -1] = True  # the last column (1/8 of the city): outside the swath
    f = _fused_run(no_radar)
    assert len(f.worker.dual_model.calls) == 3
    fused_runs = [needed for needed in f.s2.needed if needed is not None]
    # the S2 model ran beside each fusion run, asked for the radar-less column only
    assert len(fused_runs) == 3
    assert all(np.array_equal(needed, no_radar) for needed in fused_runs)
    last = [c for c in f.changes() if c.data.modality == "s2"][-1].data
    # the left half (dual model) and the radar-less column (S2 model) confirm; nothing else
    assert last.pixels["confirmed"] == int((CHANGED | no_radar).sum())


def test_a_few_pixels_without_radar_are_scored_by_the_dual_model_with_neutral_radar() -> None:
    no_radar = np.zeros(GRID.shape, bool)
    no_radar[2, 6] = True  # one pixel of 48 (2 %): speckle no-data
    f = _fused_run(no_radar)
    dual = f.worker.dual_model
    assert len(dual.calls) == 3
    assert [n for n in f.s2.needed if n is not None] == []  # no second network
    for valid, s1_valid in dual.masks:
        assert valid is not None and valid.all()  # S2 counts everywhere ...
        assert s1_valid is not None and np.array_equal(s1_valid, ~no_radar)  # radar not there
    last = [c for c in f.changes() if c.data.modality == "s2"][-1].data
    assert last.pixels["confirmed"] == int(CHANGED.sum())  # the dual model decided


def test_without_radar_context_the_s2_model_scores_the_scene() -> None:
    from tests.unit.fakes import FakeDualModel

    f = Fixture()
    f.worker.dual_model = FakeDualModel("fake_dual@2.0.0+0000cccc", change_in_left_half)
    for n in range(5):
        event = s2_event(n)
        f.register(event)
        f.worker.handle(event)
    assert f.worker.dual_model.calls == [] and len(f.s2.calls) == 2


def test_a_confirmed_site_is_reported_once_per_material_change() -> None:
    f = Fixture()
    for n in range(8):
        event = s2_event(n)
        f.register(event)
        f.worker.handle(event)
    reports = [(c.data.state_version, [(s.site_id, s.status) for s in c.data.sites])
               for c in f.changes()]
    moved = [r for r in reports if r[1]]
    # the left half becomes one site, reported as it moves first -> provisional ->
    # confirmed; scenes that change nothing send no site
    assert moved == [(4, [("1", "first")]), (5, [("1", "provisional")]),
                     (6, [("1", "confirmed")])]
    assert all(not c.data.sites for c in f.changes()[6:])
    site = f.changes()[5].data.sites[0]
    assert site.n_pixels == int(CHANGED.sum()) and site.geometry is not None
    assert site.area_m2 == CHANGED.sum() * 100.0
