"""What the API's routes read: the repositories, the city catalogue and the state store,
held once per app (``app.state.context``) and handed to the routes as a dependency."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from shapely.geometry import mapping
from starlette.exceptions import HTTPException

from monitor.errors import UrbanMonitorError
from monitor.pipeline.city_stats import CityInfo
from monitor.ports import AlertRepository, CityRepository, DeliveryOutbox, SubscriptionRepository
from monitor.settings import ApiSettings, Settings

log = logging.getLogger(__name__)


class ApiStore(AlertRepository, SubscriptionRepository, DeliveryOutbox, CityRepository,
               Protocol):
    """The repositories the API serves (``monitor.adapters.database.Database``)."""

    def schema_version(self) -> int: ...


class StateSource(Protocol):
    """Anything that loads a city's change state (``monitor.ports.StateRepository``, or a
    test double): the maps read ``grid``, ``status``, ``change_day`` ... from it."""

    def load(self, city_id: str) -> Any: ...


def load_population_csv(path: str) -> dict[str, dict[int, float]]:
    """CSV with columns city_id, year, population."""
    out: dict[str, dict[int, float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for i, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    out.setdefault(row["city_id"], {})[int(row["year"])] = float(row["population"])
                except (KeyError, ValueError) as exc:
                    raise UrbanMonitorError(f"population CSV {path}, line {i}: {exc}",
                                            "columns must be city_id,year,population") from exc
    except FileNotFoundError:
        raise UrbanMonitorError(f"population CSV {path} not found",
                                "fix api.population_csv or remove it") from None
    return out


class Catalogue:
    """The cities: the configured ones first, then those other processes registered,
    with populations from ``api.population_csv`` on top."""

    def __init__(self, settings: Settings, cities: CityRepository) -> None:
        self.settings = settings
        self.repository = cities
        self.population = (load_population_csv(settings.api.population_csv)
                           if settings.api.population_csv else {})

    def cities(self) -> dict[str, CityInfo]:
        out: dict[str, CityInfo] = {}
        for c in self.settings.cities:
            out[c.id] = CityInfo(id=c.id, name=c.name, country=c.country,
                                 aoi=dict(mapping(c.aoi())), population=dict(c.population),
                                 built_up_km2=dict(c.built_up_km2))
        for row in self.repository.cities():
            if row.id not in out:
                out[row.id] = CityInfo(id=row.id, name=row.name, country=row.country,
                                       aoi=row.aoi, population=dict(row.population))
        for city_id, pop in self.population.items():
            if city_id in out:
                out[city_id].population = {**out[city_id].population, **pop}
        return out

    def city(self, city_id: str) -> CityInfo:
        city = self.cities().get(city_id)
        if city is None:
            raise HTTPException(404, f"unknown city '{city_id}'; see /collections/cities/items")
        return city


@dataclass
class ApiContext:
    settings: Settings
    store: ApiStore
    catalogue: Catalogue
    states: StateSource | None = None
    # the STAC API's sources (services.api.stac): change layers and model cards
    layers: Any = None
    model_cards: Any = None

    @property
    def api(self) -> ApiSettings:
        return self.settings.api

    def load_state(self, city_id: str) -> Any:
        """The city's change state, or the API's 404 (unknown city, no store, no state).

        A damaged latest version (truncated file, bad pointer) falls back to the newest
        intact kept version; with none intact, 503. Messages never hold server paths."""
        self.catalogue.city(city_id)
        if self.states is None:
            raise HTTPException(404, "no change state store is configured for this API")
        try:
            state = self.states.load(city_id)
        except (FileNotFoundError, KeyError):
            raise HTTPException(404, f"no change state for city '{city_id}' yet") from None
        except Exception as exc:  # noqa: BLE001 - StateError, or a reader's own error
            state = self._intact_fallback(city_id, exc)
        if state is None:
            raise HTTPException(404, f"no change state for city '{city_id}' yet; it appears "
                                "after the first scene is processed")
        return state

    def _intact_fallback(self, city_id: str, failure: Exception) -> Any:
        states: Any = self.states
        log.warning("change state of %s cannot be read (%s); trying the kept versions",
                    city_id, failure)
        try:
            candidates = list(states.stored_versions(city_id))
        except Exception:  # noqa: BLE001 - a store without listing, or listing fails
            candidates = []
        try:
            latest = states.latest_version(city_id)
        except Exception:  # noqa: BLE001 - the pointer itself is damaged
            latest = None
        if latest is not None:
            candidates = [v for v in candidates if v <= latest]
        for version in reversed(candidates):
            try:
                state = states.load_version(city_id, version)
            except Exception as exc:  # noqa: BLE001
                log.warning("change state of %s, version %s: %s", city_id, version, exc)
                continue
            log.warning("serving version %s of %s (the latest is damaged)", version, city_id)
            return state
        raise HTTPException(503, f"the change state of city '{city_id}' is damaged and no "
                            "intact version is kept; it is rebuilt as scenes are processed")


def context(request: Request) -> ApiContext:
    """The dependency every route takes."""
    ctx: ApiContext = request.app.state.context
    return ctx


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")
