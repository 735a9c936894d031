"""Security and operations (issue 17): secrets masked wherever they are printed, and
bounded YAML loading. ``urban-monitor config check`` runs as the command does
(``monitor.cli.main``), on the issue's hostile files; logging runs in a subprocess
configured as the services configure it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.cli import main as cli_main
from monitor.redact import redact_config, redact_text

REPO_ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "Db-Pa55word-9931"
QUERY_PASSWORD = "Query-Pa55-4411"
API_KEY = "k3y-0123456789abcdef-SECRET"
PC_KEY = "PC-SUBSCRIPTION-KEY-555"
S3_SECRET = "S3-SECRET-777"
SECRETS = (DB_PASSWORD, QUERY_PASSWORD, API_KEY, PC_KEY, S3_SECRET)


def config_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(["config", "check", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- secrets -----------------------------------------------------------------------------
def test_config_check_masks_every_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "secrets.yaml", f"""\
base: {REPO_ROOT / 'config' / 'default.yaml'}
database:
  url: postgresql+psycopg://monitor:{DB_PASSWORD}@db:5432/urban_monitor?sslmode=disable&password={QUERY_PASSWORD}
api:
  api_keys: ["{API_KEY}"]
state:
  url: s3://bucket/state?access_key=AKIAEXAMPLE&secret_key={S3_SECRET}
providers:
  planetary-computer:
    url: https://planetarycomputer.microsoft.com/api/stac/v1
    signing: planetary-computer
    subscription_key: {PC_KEY}
    collections:
      sentinel-2-l2a:
        modality: s2
        assets: {{blue: B02, green: B03, red: B04, nir: B08, swir16: B11, swir22: B12, scl: SCL}}
""")
    for fmt in ("yaml", "json"):
        code = cli_main(["config", "check", str(path), "--format", fmt])
        out = capsys.readouterr()
        assert code == 0, out.err
        for secret in SECRETS:
            assert secret not in out.out + out.err
        assert "postgresql+psycopg://monitor:***@db:5432/urban_monitor" in out.out
        assert "password=***" in out.out and "secret_key=***" in out.out
        assert "signing: planetary-computer" in out.out or '"planetary-computer"' in out.out


def test_start_up_errors_mask_query_string_passwords(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "startup.yaml", "database:\n  url: postgresql+psycopg://monitor:"
                 f"{DB_PASSWORD}@127.0.0.1:1/urban_monitor?password={QUERY_PASSWORD}"
                 "&connect_timeout=2\n")
    code = cli_main(["--config", str(path), "db", "init"])
    err = capsys.readouterr().err
    assert code == 2 and "is unavailable" in err
    assert DB_PASSWORD not in err and QUERY_PASSWORD not in err
    assert "monitor:***@127.0.0.1:1" in err and "password=***" in err


def test_log_lines_and_tracebacks_are_masked() -> None:
    script = f"""
import logging
from monitor.cli import configure_logging
configure_logging("INFO")
log = logging.getLogger("probe")
log.info("connecting to %s", "postgresql://u:{DB_PASSWORD}@h/db?password={QUERY_PASSWORD}")
log.warning("GET /alerts?token={API_KEY}&x=1 api_key={PC_KEY}")
try:
    raise RuntimeError("s3://b/k?secret_key={S3_SECRET}")
except RuntimeError:
    log.exception("failed")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    assert "connecting to postgresql://u:***@h/db?password=***" in done.stderr
    assert "Traceback" in done.stderr and "secret_key=***" in done.stderr
    for secret in SECRETS:
        assert secret not in done.stderr


def test_redaction_rules() -> None:
    assert redact_text("https://x/y?sig=abc&se=1&signing=none") == "https://x/y?sig=***&se=1&signing=none"
    assert redact_text("host=db password='a b' user=u") == "host=db password=*** user=u"
    assert redact_text("http://u:p@ss@h/x") == "http://u:***@h/x"
    assert redact_text("plain http://h:80/a@b key=partition") == "plain http://h:80/a@b key=partition"
    assert redact_config({"secret": "s", "api_keys": ["k"], "signing": "none", "demo": {
        "token": "t", "url": "http://a:b@c/"}}) == {
        "secret": "***", "api_keys": ["***"], "signing": "none",
        "demo": {"token": "***", "url": "http://a:***@c/"}}


# -- bounded YAML ------------------------------------------------------------------------------
def billion_laughs(levels: int = 9) -> str:
    lines = [f"base: {REPO_ROOT / 'config' / 'default.yaml'}", "demo:",
             "  a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    prev = "a"
    for name in "bcdefghijkl"[:levels - 1]:
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("laughs.yaml", billion_laughs().encode(), "aliases are expanded"),
    ("cycle.yaml", b"demo:\n  a: &a [1, *a]\n", "aliases are expanded"),
    ("aliases.yaml", b"demo:\n  a: &a 1\n  b: [" + b",".join([b"*a"] * 1500) + b"]\n",
     "more than 1000 aliases"),
    ("binary.yaml", bytes(range(256)) * 8, "binary file"),
    ("latin1.yaml", "api:\n  title: Caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    ("huge.yaml", b"demo:\n" + b"".join(b"  k%d: %s\n" % (i, b"x" * 100) for i in range(11000)),
     "more than the 1048576"),
    ("deep.yaml", b"demo: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
])
def test_hostile_yaml_gets_a_clear_error_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    started = time.monotonic()
    code, out, err = config_check(path, capsys)
    assert time.monotonic() - started < 10
    assert code == 2, (out[-300:], err)
    assert err.startswith(f"error: invalid configuration in {path}") and expected in err, err
    assert "Traceback" not in err and out == ""


def test_a_directory_or_missing_file_is_a_clear_error(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = config_check(tmp_path, capsys)
    assert code == 2 and "is a directory" in err
    code, _, err = config_check(tmp_path / "nope.yaml", capsys)
    assert code == 2 and "file not found" in err
