"""The state store on a local folder, on fsspec's memory filesystem, and on a filesystem
that fails mid-save (the previous version must stay intact and latest)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from monitor.adapters.state_store import StateStore
from monitor.domain.grid import CityGrid
from monitor.domain.state import CityState, Observation, StateParams
from monitor.errors import StateError

H, W = 6, 7
GRID = CityGrid(epsg=32633, origin_x=400000.0, origin_y=5800000.0, width=W, height=H)
PARAMS = StateParams(s2_reference_count=1, baseline_days=0)


def scene(i: int, p: float | None = 0.95) -> Observation:
    values = np.full((6, H, W), 0.1 + 0.01 * i, dtype=np.float32)
    return Observation(f"scene-{i}", "s2", None, date(2022, 5, 1) + timedelta(days=5 * i),
                       values, np.ones((H, W), bool),
                       None if p is None else np.full((H, W), p, np.float32))


def assert_same(a: CityState, b: CityState) -> None:
    assert a.to_metadata() == b.to_metadata()
    for name, array in a.to_arrays().items():
        other = b.to_arrays()[name]
        assert other.dtype == array.dtype, name
        np.testing.assert_array_equal(other, array, err_msg=name)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "local":
        return StateStore(str(tmp_path / "state"), keep=3)
    return StateStore(f"memory://states-{uuid.uuid4().hex}", keep=3)


def test_save_and_load_round_trip(store: StateStore) -> None:
    assert store.load("lagos") is None and store.versions("lagos") == []
    state = CityState.create(GRID, PARAMS)
    state.apply(scene(0, None))
    state.apply(scene(1))
    assert store.save("lagos", state) == 2
    loaded = store.load("lagos")
    assert loaded is not None
    assert_same(state, loaded)
    assert loaded.apply(scene(1)).outcome == "duplicate"  # it remembers what it applied
    assert loaded.apply(scene(2)).applied


def test_versions_are_kept_and_pruned(store: StateStore) -> None:
    state = CityState.create(GRID, PARAMS)
    snapshots = {}
    for i in range(6):
        state.apply(scene(i, None if i == 0 else 0.9))
        store.save("accra", state)
        snapshots[state.version] = state.copy()
    assert store.versions("accra") == [4, 5, 6]
    assert store.latest_version("accra") == 6
    assert_same(store.load_version("accra", 5), snapshots[5])
    with pytest.raises(StateError, match=r"version 2 does not exist.*\[4, 5, 6\]"):
        store.load_version("accra", 2)


def test_saving_the_same_version_again_writes_nothing(store: StateStore) -> None:
    state = CityState.create(GRID, PARAMS)
    state.apply(scene(0, None))
    assert store.save("dakar", state) == 1
    assert store.save("dakar", state) == 1
    assert store.versions("dakar") == [1]


def test_a_stale_or_diverged_writer_is_refused(store: StateStore) -> None:
    state = CityState.create(GRID, PARAMS)
    state.apply(scene(0, None))
    store.save("lima", state)
    worker_a = store.load("lima")
    worker_b = store.load("lima")
    worker_a.apply(scene(1))
    worker_b.apply(scene(2))
    store.save("lima", worker_a)
    with pytest.raises(StateError, match="another worker updated this city"):
        store.save("lima", worker_b)
    assert store.load("lima").last_scene_id == "scene-1"


def test_bad_city_ids_are_refused(store: StateStore) -> None:
    with pytest.raises(StateError, match="city id"):
        store.load("../etc")


def test_a_corrupt_version_names_the_city_and_what_to_do(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    state = CityState.create(GRID, PARAMS)
    state.apply(scene(0, None))
    store.save("pune", state)
    (tmp_path / "pune" / "v00000001.npz").write_bytes(b"not a state")
    with pytest.raises(StateError, match="city pune.*version 1.*corrupt"):
        store.load("pune")


class FailingFileSystem(LocalFileSystem):
    """A real local filesystem that fails at one chosen step of a save."""

    cachable = False

    def __init__(self, fail_at: str) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.armed = False

    def open(self, path, mode="rb", **kwargs):  # type: ignore[no-untyped-def]
        f = super().open(path, mode, **kwargs)
        if self.armed and "w" in mode and self.fail_at == "write" and ".tmp-" in str(path):
            original = f.write

            def write_half(data: bytes) -> int:
                original(data[: len(data) // 2])
                raise OSError(28, "No space left on device")

            f.write = write_half
        return f

    def mv(self, path1, path2, **kwargs):  # type: ignore[no-untyped-def]
        if self.armed and self.fail_at == "pointer" and str(path2).endswith("LATEST.json"):
            raise OSError(5, "Input/output error")
        if self.armed and self.fail_at == "move" and str(path2).endswith(".npz"):
            raise OSError(5, "Input/output error")
        return super().mv(path1, path2, **kwargs)


@pytest.mark.parametrize("fail_at", ["write", "move", "pointer"])
def test_a_failing_write_leaves_the_previous_version_intact(tmp_path: Path, fail_at: str) -> None:
    fs = FailingFileSystem(fail_at)
    store = StateStore(str(tmp_path / "state"), filesystem=fs)
    state = CityState.create(GRID, PARAMS)
    state.apply(scene(0, None))
    state.apply(scene(1))
    store.save("nairobi", state)
    saved = state.copy()
    state.apply(scene(2))
    fs.armed = True
    with pytest.raises(StateError, match=r"city nairobi: could not write version 3.*version 2 is intact"):
        store.save("nairobi", state)
    fs.armed = False
    assert store.latest_version("nairobi") == 2
    assert store.versions("nairobi") == [2]
    assert_same(store.load("nairobi"), saved)
    assert not [p for p in (tmp_path / "state" / "nairobi").iterdir() if ".tmp-" in p.name]
    # the retry succeeds
    assert store.save("nairobi", state) == 3
    assert_same(store.load("nairobi"), state)


def test_compressed_versions_are_smaller_and_equal(tmp_path: Path) -> None:
    plain, packed = StateStore(str(tmp_path / "a")), StateStore(str(tmp_path / "b"), compress=True)
    state = CityState.create(GRID, PARAMS)
    state.apply(scene(0, None))
    plain.save("x", state)
    packed.save("x", state)
    size = {p: (tmp_path / p / "x" / "v00000001.npz").stat().st_size for p in "ab"}
    assert size["b"] < size["a"]
    assert_same(plain.load("x"), packed.load("x"))
