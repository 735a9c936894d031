"""Configuration: the shipped files are valid, and every kind of mistake gets a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.errors import ConfigError
from monitor.settings import CONFIG_DIR, load_settings


def write(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_config_is_valid_and_has_the_seed_cities() -> None:
    settings = load_settings(CONFIG_DIR / "default.yaml")
    ids = {c.id for c in settings.cities}
    assert {"stockholm", "beijing", "shanghai"} <= ids
    assert len(ids) >= 6
    # fast-growing cities in Asia and Africa
    assert {"lagos", "nairobi", "addis-ababa"} & ids and {"dhaka", "hyderabad"} & ids
    assert settings.bus.kind == "embedded"
    for source in settings.sources:
        assert settings.collection(source.provider, source.collection).modality in ("s1", "s2")


def test_every_city_gets_a_utm_10m_grid() -> None:
    from monitor.domain.city import City

    settings = load_settings(CONFIG_DIR / "default.yaml")
    for cfg in settings.cities:
        city = City.from_aoi(cfg.id, cfg.name, cfg.aoi())
        assert city.grid.pixel_size == 10.0
        assert 32601 <= city.grid.epsg <= 32760
        assert city.grid.origin_x % 10 == 0 and city.grid.origin_y % 10 == 0
        assert 1 < city.grid.area_km2() < 5000


def test_demo_config_inherits_from_default() -> None:
    settings = load_settings(CONFIG_DIR / "demo.yaml")
    assert [c.id for c in settings.cities] == ["demo-city"]
    assert "earth-search" in settings.providers and "synthetic" in settings.providers
    assert settings.bus.kind == "embedded" and settings.demo["size_km"] == 5


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBAN_MONITOR_BUS__KIND", "kafka")
    monkeypatch.setenv("URBAN_MONITOR_DATABASE__URL", "postgresql+psycopg://u@h/db")
    settings = load_settings(CONFIG_DIR / "default.yaml")
    assert settings.bus.kind == "kafka"
    assert settings.database.url == "postgresql+psycopg://u@h/db"
    assert settings.bus.scenes_topic == "urban.scenes.v1"  # untouched keys keep file values


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("bus:\n  kind: kafak\n", "bus.kind", "'embedded' or 'kafka'"),
        ("bus:\n  knd: kafka\n", "bus.knd", "unknown key"),
        ("databse:\n  url: x\n", "databse", "unknown key"),
        ("cities:\n  - id: x\n    name: X\n    bbox: [10, 50, 9, 51]\n", "cities.0", "west, south, east, north"),
        ("cities:\n  - id: x\n    name: X\n", "cities.0", "exactly one of 'bbox' or 'geometry'"),
        ("cities:\n  - id: x\n    name: X\n    geometry: {type: Polygon, coordinates: [[[0,0],[1,1],[1,0],[0,1],[0,0]]]}\n",
         "cities.0", "self-intersecting"),
        ("cities:\n  - id: x\n    name: X\n    geometry: {type: Point, coordinates: [0, 0]}\n", "cities.0", "Point"),
        ("sources:\n  - {name: a, provider: nasa, collection: s2}\n", None, "unknown provider 'nasa'"),
        ("sources:\n  - {name: a, provider: earth-search, collection: landsat}\n", None,
         "unknown collection 'landsat'"),
    ],
)
def test_bad_settings_name_file_key_and_remedy(tmp_path: Path, text: str, key: str | None,
                                               words: str) -> None:
    base = "" if text.startswith(("sources", "bus")) is False else ""
    if text.startswith("sources"):
        base = f"base: {CONFIG_DIR / 'default.yaml'}\n"
    path = write(tmp_path, base + text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    if key:
        assert f"key '{key}'" in message
    assert words in message
    assert "What to do:" in message


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bus:\n  kind: embedded\n  partitions: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_settings(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_duplicate_city_ids_are_rejected(tmp_path: Path) -> None:
    city = "  - {id: a, name: A, bbox: [0, 0, 0.1, 0.1]}\n"
    path = write(tmp_path, "cities:\n" + city + city)
    with pytest.raises(ConfigError, match="appears twice"):
        load_settings(path)


def test_cli_config_check_prints_config_or_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(CONFIG_DIR / "default.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "stockholm" in out and "OK:" in err
    bad = write(tmp_path, "bus:\n  knd: kafka\n")
    assert main(["config", "check", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert "key 'bus.knd'" in err and "unknown key" in err


def test_cli_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("config", "events", "db"):
        assert command in out
