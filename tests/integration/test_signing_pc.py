"""Planetary Computer signing through the ``planetary-computer`` package, against a local
fake of the SAS token endpoint answering recorded token responses (no internet here):
the subscription key is sent, hrefs get the token, tokens are cached until shortly
before they expire, and a failing endpoint is a CatalogError that says what to do."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from monitor.adapters.signing import signer_for
from monitor.domain.events import Asset, SceneData
from monitor.errors import CatalogError

HREF = ("https://sentinel1euwestrtc.blob.core.windows.net/sentinel1-grd-rtc/GRD/2024/4/19/IW/DV/"
        "S1A_IW_GRDH_1SDV_20240419T045749_20240419T045814_053498_067DF2_AF19/measurement/"
        "iw-vv.rtc.tiff")
# The shape of a recorded answer of /api/sas/v1/token/{account}/{container}.
RECORDED = {"msft:expiry": "2030-01-01T00:00:00Z",
            "token": "st=2029-12-31T23%3A00%3A00Z&se=2030-01-01T00%3A00%3A00Z&sp=rl&sv=2021-06-08"
                     "&sr=c&skoid=abc&sktid=def&skt=2029-12-31T23%3A00%3A00Z&ske=2030-01-01T00"
                     "%3A00%3A00Z&sks=b&skv=2021-06-08&sig=ZmFrZSBzaWduYXR1cmU%3D"}


class FakeTokenEndpoint:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                endpoint.requests.append((self.path,
                                          self.headers.get("Ocp-Apim-Subscription-Key")))
                status, body = endpoint.answers.pop(0) if endpoint.answers else (200, RECORDED)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/sas/v1/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[FakeTokenEndpoint]:
    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    fake = FakeTokenEndpoint()
    settings = Settings.get()
    before = (settings.subscription_key, settings.sas_url)
    TOKEN_CACHE.clear()
    yield fake
    TOKEN_CACHE.clear()
    settings.subscription_key, settings.sas_url = before
    fake.close()


def scene() -> SceneData:
    return SceneData(city_id="lagos", provider="planetary-computer", stac_api="http://x",
                     collection="sentinel-1-rtc", item_id="S1A_x", modality="s1",
                     acquired=datetime(2024, 4, 19, tzinfo=UTC), bbox=[0, 0, 1, 1],
                     assets={"vv": Asset(href=HREF, key="vv"),
                             "vh": Asset(href=HREF.replace("vv", "vh"), key="vh")})


def test_hrefs_are_signed_with_the_package_and_the_subscription_key(
        endpoint: FakeTokenEndpoint) -> None:
    signer = signer_for("planetary-computer", subscription_key="my-key", sas_url=endpoint.url)
    assert signer is not None
    signed = signer.sign_scene(scene())
    for asset in signed.assets.values():
        query = parse_qs(urlsplit(asset.href).query)
        assert asset.href.startswith(HREF.split("iw-")[0])
        assert query["sig"] == ["ZmFrZSBzaWduYXR1cmU="] and query["sp"] == ["rl"]
    # one token per (account, container), with the key, cached for the second asset
    assert endpoint.requests == [("/api/sas/v1/token/sentinel1euwestrtc/sentinel1-grd-rtc",
                                  "my-key")]
    signer.sign_scene(scene())
    assert len(endpoint.requests) == 1
    assert signer.sign("https://sentinel-cogs.s3.amazonaws.com/B04.tif") == (
        "https://sentinel-cogs.s3.amazonaws.com/B04.tif")  # not Azure: untouched


def test_an_expiring_token_is_renewed(endpoint: FakeTokenEndpoint) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    endpoint.answers.append((200, {**RECORDED, "msft:expiry": soon}))
    signer = signer_for("planetary-computer", sas_url=endpoint.url)
    assert signer is not None
    signer.sign(HREF)
    signer.sign(HREF)  # the first token expires within the margin: a new one is asked for
    assert len(endpoint.requests) == 2
    assert endpoint.requests[0][1] is None  # anonymous without a key


def test_a_failing_endpoint_is_a_catalog_error(endpoint: FakeTokenEndpoint) -> None:
    endpoint.answers.extend([(401, {"message": "invalid subscription key"})] * 5)
    signer = signer_for("planetary-computer", subscription_key="bad", sas_url=endpoint.url)
    assert signer is not None
    with pytest.raises(CatalogError) as raised:
        signer.sign(HREF)
    assert "sentinel1euwestrtc/sentinel1-grd-rtc" in str(raised.value)
    assert "subscription_key" in str(raised.value)
