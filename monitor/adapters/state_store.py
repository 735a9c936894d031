"""Persist city change states under a local folder or any fsspec URL, atomically and versioned.

Layout, per city::

    <url>/<city_id>/v00000042.npz    one version: every state array + its JSON metadata
    <url>/<city_id>/LATEST.json      the pointer: {"version": 42, "last_scene_id": "..."}

A save writes the new version under a temporary name, moves it into place, and only then
moves a new pointer over the old one: readers follow the pointer, so a save that fails at
any step leaves the previous version as the latest, intact. The last ``keep`` versions are
kept (``load_version`` reads them). On object stores a whole-object PUT is atomic, which
gives the same guarantee.

The version of a saved state is the state's own version (one per applied scene), so two
workers that diverged from the same version are told apart: a stale or conflicting save
raises :class:`StateError` instead of overwriting the other's work.
"""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
import zipfile
from typing import Any

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from monitor.domain.state import CityState
from monitor.errors import StateError

log = logging.getLogger(__name__)

POINTER = "LATEST.json"
_VERSION_FILE = re.compile(r"^v(\d{8})\.npz$")
_SAFE_CITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_METADATA_KEY = "__metadata__"


class StateStore:
    """Versioned, atomic storage of :class:`CityState` objects.

    ``url``: a local folder (created when missing) or any fsspec URL (``memory://``,
    ``s3://bucket/prefix``, ...). ``keep``: versions kept per city. ``compress``: zlib
    (``np.savez_compressed``) — about 10x smaller, several times slower to write.
    ``filesystem``: use this fsspec filesystem instead of the one the URL names.
    """

    def __init__(self, url: str, keep: int = 5, compress: bool = False,
                 filesystem: fsspec.AbstractFileSystem | None = None) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1 version")
        if filesystem is None:
            filesystem, root = url_to_fs(url)
        else:
            root = filesystem._strip_protocol(url)
        self.fs: fsspec.AbstractFileSystem = filesystem
        self.root = str(root).rstrip("/")
        self.url = url
        self.keep = keep
        self.compress = compress

    # ---------------------------------------------------------------- paths
    def _dir(self, city_id: str) -> str:
        if not _SAFE_CITY_ID.match(city_id):
            raise StateError(city_id, "the city id cannot name a folder",
                             "use letters, digits, '-', '_' or '.' in city ids")
        return f"{self.root}/{city_id}"

    def _version_path(self, city_id: str, version: int) -> str:
        return f"{self._dir(city_id)}/v{version:08d}.npz"

    # ---------------------------------------------------------------- reading
    def _pointer(self, city_id: str) -> dict[str, Any] | None:
        path = f"{self._dir(city_id)}/{POINTER}"
        try:
            with self.fs.open(path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(city_id, f"cannot read the state pointer {path}: {exc}",
                             "check the storage; restore it from a listed version "
                             "(StateStore.versions, load_version)") from exc
        if not isinstance(data, dict) or not isinstance(data.get("version"), int):
            raise StateError(city_id, f"state pointer {path} is malformed: {data!r}",
                             "rewrite it as {\"version\": N} naming a listed version")
        return data

    def latest_version(self, city_id: str) -> int | None:
        """The version the pointer names, or None when the city has no saved state."""
        pointer = self._pointer(city_id)
        return None if pointer is None else int(pointer["version"])

    def versions(self, city_id: str) -> list[int]:
        """Saved versions still kept, oldest first (never newer than the latest)."""
        latest = self.latest_version(city_id)
        if latest is None:
            return []
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self._dir(city_id), detail=False)]
        except FileNotFoundError:
            return []
        found = sorted(int(m.group(1)) for n in names if (m := _VERSION_FILE.match(n)))
        return [v for v in found if v <= latest]

    def stored_versions(self, city_id: str) -> list[int]:
        """Version files present, oldest first, whatever the pointer says (to fall back
        on when the pointer or the latest version is damaged)."""
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self._dir(city_id), detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _VERSION_FILE.match(n)))

    def load(self, city_id: str) -> CityState | None:
        """The latest saved state of the city, or None when it has none."""
        latest = self.latest_version(city_id)
        return None if latest is None else self.load_version(city_id, latest)

    def load_version(self, city_id: str, version: int) -> CityState:
        path = self._version_path(city_id, version)
        try:
            with self.fs.open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError as exc:
            raise StateError(city_id, f"version {version} does not exist ({path})",
                             f"load one of the kept versions {self.versions(city_id)}") from exc
        except OSError as exc:
            raise StateError(city_id, f"cannot read version {version} at {path}: {exc}",
                             "check the storage and retry") from exc
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files if k != _METADATA_KEY}
                metadata = json.loads(npz[_METADATA_KEY].tobytes())
            state = CityState.from_parts(metadata, arrays)
        except StateError as exc:
            raise StateError(city_id, f"version {version} does not fit its own grid: {exc.what}",
                             f"load an older version from {self.versions(city_id)}") from exc
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise StateError(city_id, f"version {version} at {path} is corrupt: {exc}",
                             f"load an older version from {self.versions(city_id)}") from exc
        return state

    # ---------------------------------------------------------------- writing
    def _encode(self, state: CityState) -> bytes:
        buffer = io.BytesIO()
        metadata = np.frombuffer(json.dumps(state.to_metadata()).encode(), dtype=np.uint8)
        arrays: dict[str, Any] = {**state.to_arrays(), _METADATA_KEY: metadata}
        if self.compress:
            np.savez_compressed(buffer, **arrays)
        else:
            np.savez(buffer, **arrays)
        return buffer.getvalue()

    def save(self, city_id: str, state: CityState) -> int:
        """Persist ``state`` as its version; returns the version now latest.

        Saving the version that is already latest (same last scene) writes nothing. A state
        older than the latest, or with the same version but another last scene, raises
        :class:`StateError`: another worker moved the city on; reload and re-apply.
        """
        directory = self._dir(city_id)
        pointer = self._pointer(city_id)
        version = int(state.version)
        if pointer is not None:
            latest = int(pointer["version"])
            if version == latest and pointer.get("last_scene_id") == state.last_scene_id:
                return latest
            if version <= latest:
                raise StateError(
                    city_id, f"refusing to save version {version} (last scene "
                    f"{state.last_scene_id}) over version {latest} (last scene "
                    f"{pointer.get('last_scene_id')})",
                    "another worker updated this city: reload the state and apply the scene again")
        final = self._version_path(city_id, version)
        tmp = f"{directory}/.tmp-{uuid.uuid4().hex}"
        pointer_tmp = f"{directory}/.tmp-{uuid.uuid4().hex}-{POINTER}"
        try:
            self.fs.makedirs(directory, exist_ok=True)
            with self.fs.open(tmp, "wb") as f:
                f.write(self._encode(state))
            self.fs.mv(tmp, final)
            with self.fs.open(pointer_tmp, "wb") as f:
                f.write(json.dumps({"version": version,
                                    "last_scene_id": state.last_scene_id}).encode())
            self.fs.mv(pointer_tmp, f"{directory}/{POINTER}")
        except (OSError, ValueError) as exc:
            for leftover in (tmp, pointer_tmp):
                try:
                    if self.fs.exists(leftover):
                        self.fs.rm(leftover)
                except OSError:
                    log.warning("could not remove temporary file %s", leftover)
            previous = "no earlier version" if pointer is None else f"version {pointer['version']}"
            raise StateError(city_id, f"could not write version {version} to {self.url}: {exc}",
                             f"{previous} is intact and still the latest; retry the scene") from exc
        self._prune(city_id)
        return version

    def _prune(self, city_id: str) -> None:
        for old in self.versions(city_id)[:-self.keep]:
            try:
                self.fs.rm(self._version_path(city_id, old))
            except OSError as exc:  # a leftover old version is harmless
                log.warning("could not remove old state version %s of %s: %s", old, city_id, exc)
