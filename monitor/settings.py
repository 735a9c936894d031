"""One settings object for the whole system, built once in the entry point.

Sources, highest priority first: environment variables ``URBAN_MONITOR_<SECTION>__<KEY>``
(``__`` separates nested keys), then the YAML file (``config/default.yaml`` unless another
is given), then the defaults below. Unknown keys are errors, not silently ignored: a typo
in a deployment file must not turn into a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.errors import ConfigError, GeometryError

ENV_PREFIX = "URBAN_MONITOR_"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

Modality = Literal["s1", "s2"]
S2_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22", "scl")
S1_BANDS = ("vv", "vh")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectionSettings(_Strict):
    """How one provider's collection maps onto our canonical band names."""

    modality: Modality
    assets: dict[str, str] = Field(
        description="canonical band name (blue, green, red, nir, swir16, swir22, scl / vv, vh) "
        "-> the provider's asset key"
    )

    @model_validator(mode="after")
    def _check_assets(self) -> CollectionSettings:
        allowed = S2_BANDS if self.modality == "s2" else S1_BANDS
        unknown = sorted(set(self.assets) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown canonical band(s) {unknown} for modality {self.modality}; "
                f"use {list(allowed)}"
            )
        required = {"red", "nir", "scl"} if self.modality == "s2" else {"vv"}
        missing = sorted(required - set(self.assets))
        if missing:
            raise ValueError(f"asset mapping lacks required band(s) {missing}")
        return self


class ProviderSettings(_Strict):
    url: str
    signing: Literal["none", "planetary-computer"] = "none"
    subscription_key: SecretStr | None = Field(
        default=None, description="Planetary Computer API subscription key (signing: "
        "planetary-computer): higher rate limits for SAS tokens; none: anonymous or the "
        "planetary-computer package's PC_SDK_SUBSCRIPTION_KEY")
    sas_url: str | None = Field(default=None, description="the SAS token endpoint "
                                "(default: the Planetary Computer's public one)")
    timeout_s: float = 30.0
    max_retries: int = 4
    page_size: int = 100
    collections: dict[str, CollectionSettings]
    asset_schemes: list[Literal["https", "http", "s3"]] | None = Field(
        default=None, description="URL schemes an item's asset hrefs may use (others are "
        "refused before GDAL opens them); default: https and s3, plus http for a local "
        "provider")
    asset_hosts: list[str] | None = Field(
        default=None, description="hosts (or S3 buckets) asset hrefs may name: exact names "
        "or '*.suffix' patterns; default: the provider URL's host only")
    local_assets: bool | None = Field(
        default=None, description="whether asset hrefs may be local files (paths, file://): "
        "default only for a local provider (its URL on loopback or a local path, e.g. the "
        "synthetic archive's STAC server)")

    @field_validator("asset_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str] | None) -> list[str] | None:
        for host in value or []:
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
                raise ValueError(f"'{host}' is not a host name or a '*.suffix' pattern")
        return value


class SourceSettings(_Strict):
    """One polled (provider, collection) pair."""

    name: str
    provider: str
    collection: str
    interval_minutes: float = 15.0
    lookback_days: float = 5.0
    max_cloud_cover: float | None = Field(default=None, ge=0, le=100)
    s1_instrument_mode: str = "IW"
    s1_polarizations: list[str] = Field(default_factory=lambda: ["VV", "VH"])
    enabled: bool = True


class BusSettings(_Strict):
    kind: Literal["embedded", "kafka"] = "embedded"
    bootstrap_servers: str = "127.0.0.1:19092"
    scenes_topic: str = "urban.scenes.v1"
    changes_topic: str = "urban.changes.v2"  # ChangeEvent v2 (per-site deltas); v1 retired
    alerts_topic: str = "urban.alerts.v1"
    dead_letter_topic: str = "urban.deadletter.v1"
    partitions: int = Field(default=6, ge=1)
    inference_group: str = "inference"
    alerting_group: str = "alerting"
    client_id: str = "urban-monitor"


class DatabaseSettings(_Strict):
    url: str = "sqlite:///var/urban-monitor.db"


class StateSettings(_Strict):
    url: str = "var/state"
    keep_versions: int = Field(default=3, ge=1)
    params: dict[str, bool | int | float] = Field(
        default_factory=dict,
        description="overrides of the change state's parameters (monitor.domain.state."
        "StateParams, documented in monitor/domain/STATE.md), e.g. {baseline_days: 90}; "
        "they apply to states created from now on (a state keeps the parameters it was "
        "created with)")

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, bool | int | float]) -> dict[str, bool | int | float]:
        from dataclasses import fields

        from monitor.domain.state import StateParams

        known = {f.name for f in fields(StateParams)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown state parameter(s) {unknown}; known: {sorted(known)}")
        try:
            StateParams.from_dict(value)
        except ConfigError as exc:
            raise ValueError(exc.what) from exc
        return value


class ProductSettings(_Strict):
    """The change layers (COGs + STAC items) written from the city states, and how the
    STAC API and exports point at them."""

    url: str | None = Field(default=None, description="where the layers are written: a "
                            "local folder or fsspec URL (default: state.url)")
    layers_cadence: Literal["version", "day", "on-demand"] = Field(
        default="day", description="which saved state versions get layers: every version "
        "(one per scene), the first of each new acquisition day per city, or only on "
        "demand (urban-monitor products publish)")
    layers_every_versions: int = Field(default=0, ge=0, description="with cadence 'day': "
                                       "also publish once this many versions went by "
                                       "(0: off)")
    keep_versions: int = Field(default=10, ge=1, description="layer sets kept per city")
    asset_base_url: str | None = Field(
        default=None, description="public base URL of the products URL (e.g. an object "
        "store's https endpoint): STAC assets point there; default: served by the API")


class ModelSettings(_Strict):
    """Which change models the inference workers run (shipped name or .onnx path)."""

    s2: str = "change_s2"
    s1: str = "change_s1"
    dual: str | None = Field(
        default="change_dual_int8",
        description="the dual-stream S1+S2 model that scores S2 scenes with radar context "
                    "(null: the S2 model alone)")
    threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads per worker")
    tile: int = Field(
        default=1024, ge=64,
        description="largest model tile (px); a city up to this size runs in one call")


class LoggingSettings(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AlertingSettings(_Strict):
    """How change sites become alerts, and how alerts are pushed to webhooks. (Which
    pixels form a site is the state's business: ``state.params`` site_link_px etc.)"""

    min_mapping_unit_m2: float = Field(default=1000.0, ge=0,
                                       description="smallest new alert (0.1 ha by default)")
    confidence_step: float = Field(default=0.05, ge=0, le=1, description="a confidence change "
                                   "smaller than this is not a new revision")
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_backoff_s: float = Field(default=5.0, gt=0, description="first retry delay")
    webhook_max_backoff_s: float = Field(default=300.0, gt=0, description="retry delay cap")
    webhook_give_up_after_h: float = Field(default=72.0, gt=0, description="a delivery still "
                                           "failing this long after it was queued is 'failed'")
    links_base_url: str | None = Field(
        default=None, description="public base URL of the API that AlertEvents and webhooks "
        "link to (evidence, chips, the OGC feature); default http://<api.host>:<api.port> "
        "(localhost when the API listens on every interface)")
    dispatch_interval_s: float = Field(default=1.0, gt=0)
    dispatch_batch: int = Field(default=100, ge=1)
    webhook_allow_private: list[str] = Field(
        default_factory=list, description="webhook targets allowed although they are not "
        "public (SSRF guard): IP addresses, CIDR networks (10.1.0.0/16) or exact host names; "
        "empty = public addresses only")

    @field_validator("webhook_allow_private")
    @classmethod
    def _check_allow(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            text = entry.strip()
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", text):
                    raise ValueError(f"'{entry}' is neither an IP address, a CIDR network "
                                     "nor a host name") from None
        return value


MIN_API_KEY_LENGTH = 16


class CoverageSettings(_Strict):
    """Expected vs listed acquisitions per city and source (``monitor.domain.coverage``)."""

    grace_hours: float = Field(default=48.0, gt=0, description="an expected acquisition not "
                               "listed this long after it was acquired is missing; one listed "
                               "later is late")
    lost_after_cycles: float = Field(default=3.0, gt=0, description="a track silent this many "
                                     "repeats while others are listed is taken as ended")
    min_fill: float = Field(default=0.5, ge=0, le=1, description="a unit that delivered less "
                            "than this share of its expected passes is irregular (not expected)")
    learn_days: float = Field(default=90.0, gt=0, description="history before a report's "
                              "window the schedule is learned from")
    check_minutes: float = Field(default=360.0, gt=0, description="how often the scheduler "
                                 "checks for coverage gaps (and publishes their events)")
    topic: str = Field(default="urban.coverage.v1", description="topic of the coverage gap "
                       "CloudEvents (key = city id)")
    webhook_subscriptions: list[str] = Field(default_factory=list, description="ids or names "
                                             "of webhook subscriptions that asked for coverage "
                                             "gap events (their city filter applies); they go "
                                             "out through the alert outbox, signed and retried")


class ApiSettings(_Strict):
    """The HTTP API (OGC API - Features, SSE, stats, maps, subscriptions)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    title: str = "Urban Monitor"
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="keys allowed to write and to read subscriptions "
        f"(header X-API-Key), each at least {MIN_API_KEY_LENGTH} characters without "
        "spaces; none = writes are refused. Shown masked by config check.")
    max_request_bytes: int = Field(default=65536, ge=1)
    default_limit: int = Field(default=100, ge=1)
    max_limit: int = Field(default=1000, ge=1)
    sse_poll_s: float = Field(default=1.0, gt=0)
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    population_csv: str | None = Field(default=None, description="optional CSV city_id,year,"
                                       "population; overrides the cities' population entries")
    max_connections: int = Field(default=200, ge=1, description="open connections the "
                                 "server accepts at once (more get 503)")
    max_sse_clients: int = Field(default=50, ge=1, description="live streams at once per "
                                 "API process (more get 503)")
    timeout_keep_alive_s: float = Field(default=5.0, gt=0, description="idle keep-alive "
                                        "connections are closed after this")
    timeout_request_s: float = Field(default=30.0, gt=0, description="a request whose headers "
                                     "and body have not arrived by then gets 408")

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for i, key in enumerate(keys):
            text = key.get_secret_value()
            if len(text) < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"key {i} is {'empty' if not text else 'too short'} (an unset variable?); "
                    f"each key needs at least {MIN_API_KEY_LENGTH} characters "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
            if any(c.isspace() or ord(c) < 32 for c in text):
                raise ValueError(f"key {i} contains whitespace or control characters")
        return keys


class CitySettings(_Strict):
    """A monitored city. Give ``bbox`` [west, south, east, north] or a GeoJSON ``geometry``."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str
    country: str = ""
    bbox: tuple[float, float, float, float] | None = None
    geometry: dict[str, Any] | None = None
    population: dict[int, float] = Field(
        default_factory=dict, description="year -> inhabitants, for SDG 11.3.1"
    )
    built_up_km2: dict[int, float] = Field(
        default_factory=dict, description="year -> built-up area (km2) of the AOI from an "
        "external baseline (e.g. GHSL); the base the alert areas are added to"
    )

    @model_validator(mode="after")
    def _check_aoi(self) -> CitySettings:
        if (self.bbox is None) == (self.geometry is None):
            raise ValueError("give exactly one of 'bbox' or 'geometry' for the area of interest")
        try:
            self.aoi()
        except GeometryError as exc:
            raise ValueError(f"city '{self.id}': {exc.what} ({exc.hint})") from exc
        return self

    def aoi(self) -> Any:
        from shapely.geometry import box, shape

        if self.bbox is not None:
            west, south, east, north = self.bbox
            if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                raise GeometryError(
                    f"bbox {list(self.bbox)} is not [west, south, east, north] in degrees",
                    "order the bbox as [west, south, east, north] with west < east, south < north",
                )
            return box(west, south, east, north)
        try:
            geom = shape(self.geometry)
        except Exception as exc:  # shapely raises several types for bad GeoJSON
            raise GeometryError(f"geometry is not valid GeoJSON: {exc}",
                                "give a GeoJSON Polygon or MultiPolygon in lon/lat") from exc
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise GeometryError(f"geometry is a {geom.geom_type}",
                                "give a GeoJSON Polygon or MultiPolygon in lon/lat")
        if not geom.is_valid or geom.is_empty:
            raise GeometryError("geometry is empty or self-intersecting",
                                "fix the polygon (e.g. with shapely.make_valid) or give a bbox")
        return geom


class Settings(BaseSettings):
    """The resolved configuration of one process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    cities_file: str = "cities.yaml"
    cities: list[CitySettings] = Field(default_factory=list)
    bus: BusSettings = BusSettings()
    database: DatabaseSettings = DatabaseSettings()
    state: StateSettings = StateSettings()
    products: ProductSettings = ProductSettings()
    logging: LoggingSettings = LoggingSettings()
    models: ModelSettings = ModelSettings()
    alerting: AlertingSettings = AlertingSettings()
    api: ApiSettings = ApiSettings()
    coverage: CoverageSettings = CoverageSettings()
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    sources: list[SourceSettings] = Field(default_factory=list)
    demo: dict[str, Any] = Field(default_factory=dict)
    config_path: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file: operators override deployments with env vars.
        return (env_settings, init_settings)

    @field_validator("cities")
    @classmethod
    def _unique_city_ids(cls, cities: list[CitySettings]) -> list[CitySettings]:
        seen: set[str] = set()
        for city in cities:
            if city.id in seen:
                raise ValueError(f"city id '{city.id}' appears twice; ids must be unique")
            seen.add(city.id)
        return cities

    @model_validator(mode="after")
    def _check_sources(self) -> Settings:
        for i, source in enumerate(self.sources):
            provider = self.providers.get(source.provider)
            if provider is None:
                raise ValueError(
                    f"sources.{i}: unknown provider '{source.provider}'; "
                    f"known providers: {sorted(self.providers)}"
                )
            if source.collection not in provider.collections:
                raise ValueError(
                    f"sources.{i}: unknown collection '{source.collection}' for provider "
                    f"'{source.provider}'; known: {sorted(provider.collections)}"
                )
        return self

    def city(self, city_id: str) -> CitySettings:
        for city in self.cities:
            if city.id == city_id:
                return city
        from monitor.errors import UrbanMonitorError

        raise UrbanMonitorError(
            f"unknown city '{city_id}'",
            f"use one of {[c.id for c in self.cities]} or add it to {self.cities_file}",
        )

    def collection(self, provider: str, collection: str) -> CollectionSettings:
        return self.providers[provider].collections[collection]


MAX_CONFIG_BYTES = 1 << 20        # a settings or cities file above 1 MiB is refused
MAX_CONFIG_NODES = 200_000        # values after alias expansion (billion laughs)
MAX_CONFIG_ALIASES = 1_000        # aliases (*name) in one file


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses files with more than ``MAX_CONFIG_ALIASES``
    aliases; the expanded size is checked after loading (:func:`_check_expansion`)."""

    aliases_seen = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen += 1
            if self.aliases_seen > MAX_CONFIG_ALIASES:
                raise _TooBigError(f"more than {MAX_CONFIG_ALIASES} aliases")
        return super().compose_node(parent, index)


class _TooBigError(Exception):
    pass


def _check_expansion(data: Any) -> None:
    """Count the values as a consumer would see them, aliases expanded; stop (cheaply)
    past ``MAX_CONFIG_NODES``. Shared (aliased) subtrees count every time they appear,
    which is what validation and dumping would pay; a cycle never ends, so it is caught."""
    budget = MAX_CONFIG_NODES
    stack = [data]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise _TooBigError(f"more than {MAX_CONFIG_NODES} values once its aliases are expanded "
                          "(or an alias contains itself)")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple | set):
            stack.extend(node)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), None, f"the file is {size} bytes, more than the "
                              f"{MAX_CONFIG_BYTES} a settings file may have",
                              "settings files are small; check that this is the right file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found",
                          "check the path, or run `urban-monitor config check config/default.yaml`") from None
    except IsADirectoryError:
        raise ConfigError(str(path), None, "is a directory, not a file",
                          "give the path of a YAML settings file") from None
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot be read ({exc.strerror})",
                          "check the path and its permissions") from None
    if b"\x00" in raw:
        raise ConfigError(str(path), None, "is a binary file (it holds NUL bytes), not YAML",
                          "give a YAML text file, e.g. config/default.yaml")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), None, f"is not UTF-8 text (byte {exc.start} cannot be "
                          "decoded)", "save the file as UTF-8 text") from None
    loader = _BoundedLoader(text)
    try:
        data = loader.get_single_data()
        _check_expansion(data)
    except _TooBigError as exc:
        raise ConfigError(str(path), None, f"is too large: {exc}",
                          "remove the repeated anchors/aliases (a settings file needs few)"
                          ) from None
    except RecursionError:
        raise ConfigError(str(path), None, "is nested too deeply",
                          "settings files are a few levels deep; check the file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), None, f"not valid YAML{where}: {problem}",
                          "fix the YAML syntax (indentation, colons, quotes)") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), None, f"top level is a {type(data).__name__}, not a mapping",
                          "write the settings as `key: value` pairs")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _error_from_validation(path: Path, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        hint = f"remove or correct the key '{loc[-1]}' (check spelling against config/default.yaml)"
        message = "unknown key"
    elif loc and loc[0] == "cities":
        hint = "fix that city's entry in the cities file"
    else:
        hint = "see config/default.yaml for the allowed keys and values"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return ConfigError(str(path), ".".join(loc) or None, message + more, hint)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read a YAML settings file (with ``base:`` inheritance and a cities file), validate it.

    ``base: default.yaml`` in a file means "start from that file, then apply mine", which is
    how ``config/demo.yaml`` stays short. Raises :class:`ConfigError` naming the file and key.
    """
    path = Path(path) if path else DEFAULT_CONFIG
    data = _read_yaml(path)
    base_name = data.pop("base", None)
    if base_name:
        base_path = (path.parent / str(base_name)).resolve()
        if base_path == path.resolve():
            raise ConfigError(str(path), "base", "a file cannot be its own base", "remove 'base'")
        data = _merge(_read_yaml(base_path), data)
    explicit = "cities_file" in data
    cities_file = data.get("cities_file", "cities.yaml")
    if "cities" not in data and cities_file:
        cities_path = path.parent / cities_file
        if not cities_path.exists() and base_name:
            cities_path = (path.parent / str(base_name)).resolve().parent / cities_file
        if not cities_path.exists() and not explicit:
            cities_path = CONFIG_DIR / "cities.yaml"  # the packaged list of cities
        cities_data = _read_yaml(cities_path)
        unknown = set(cities_data) - {"cities"}
        if unknown:
            raise ConfigError(str(cities_path), sorted(unknown)[0], "unknown key",
                              "the cities file holds one key, 'cities', a list of cities")
        try:
            data["cities"] = cities_data.get("cities", [])
            data = _merge(data, overrides)
            data["config_path"] = str(path)
            return Settings(**data)
        except ValidationError as exc:
            err_path = cities_path if exc.errors()[0]["loc"][:1] == ("cities",) else path
            raise _error_from_validation(err_path, exc) from None
    try:
        data = _merge(data, overrides)
        data["config_path"] = str(path)
        return Settings(**data)
    except ValidationError as exc:
        raise _error_from_validation(path, exc) from None
