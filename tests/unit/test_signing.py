"""Planetary Computer signing: the pure URL logic and the token cache (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from monitor.adapters.signing import (
    PlanetaryComputerSigner,
    SasToken,
    blob_container,
    is_signed,
    parse_token_response,
    sign_href,
)
from monitor.errors import CatalogError

# A real PC asset href (from ../shared/data/stac/planetarycomputer__sentinel-1-rtc__items.json)
HREF = ("https://sentinel1euwestrtc.blob.core.windows.net/sentinel1-grd-rtc/GRD/2024/4/19/IW/DV/"
        "S1A_IW_GRDH_1SDV_20240419T045749_20240419T045814_053498_067DF2_AF19/measurement/"
        "iw-vv.rtc.tiff")
TOKEN = "st=2025-01-01T00%3A00%3A00Z&se=2025-01-02T00%3A00%3A00Z&sp=rl&sv=2021-06-08&sr=c&sig=abc%2Bdef%3D"


def test_blob_container_parses_account_and_container() -> None:
    assert blob_container(HREF) == ("sentinel1euwestrtc", "sentinel1-grd-rtc")
    assert blob_container("https://sentinel-cogs.s3.us-west-2.amazonaws.com/x/B04.tif") is None
    assert blob_container("http://a.blob.core.windows.net/c/x") is None  # not https
    assert blob_container("https://a.blob.core.windows.net/") is None


def test_sign_href_appends_token_once_and_keeps_other_urls() -> None:
    signed = sign_href(HREF, TOKEN)
    assert signed.startswith(HREF + "?")
    query = parse_qs(urlsplit(signed).query)
    assert query["sig"] == ["abc+def="] and query["sp"] == ["rl"]
    assert is_signed(signed) and not is_signed(HREF)
    assert sign_href(signed, TOKEN) == signed
    s3 = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/x/B04.tif"
    assert sign_href(s3, TOKEN) == s3
    with_query = sign_href(HREF + "?foo=1", TOKEN)
    assert parse_qs(urlsplit(with_query).query)["foo"] == ["1"]


def test_signer_caches_tokens_until_near_expiry() -> None:
    now = [datetime(2025, 1, 1, tzinfo=UTC)]
    fetched: list[tuple[str, str]] = []

    def fetch(account: str, container: str) -> SasToken:
        fetched.append((account, container))
        return SasToken(TOKEN, now[0] + timedelta(minutes=45))

    signer = PlanetaryComputerSigner(fetch=fetch, clock=lambda: now[0])
    assert is_signed(signer.sign(HREF))
    signer.sign(HREF)
    assert fetched == [("sentinel1euwestrtc", "sentinel1-grd-rtc")]
    now[0] += timedelta(minutes=41)  # within the 5-minute renewal margin
    signer.sign(HREF)
    assert len(fetched) == 2


def test_parse_token_response() -> None:
    token = parse_token_response({"token": TOKEN, "msft:expiry": "2025-01-02T00:00:00Z"})
    assert token.expires == datetime(2025, 1, 2, tzinfo=UTC)
    with pytest.raises(CatalogError):
        parse_token_response({"error": "nope"})
