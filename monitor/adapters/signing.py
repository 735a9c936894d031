"""Planetary Computer URL signing (optional adapter).

Planetary Computer assets live in Azure Blob Storage and need a short-lived SAS token
appended to the URL. Scene events carry *unsigned* hrefs (a token in an event would expire
while the event waits on the bus); whoever reads the raster signs the href right before
opening it, with a token cached per (storage account, container) until shortly before it
expires. Tokens come from the public SAS endpoint; nothing here runs at import time.

The URL logic is pure and unit-tested; fetching a token needs the internet and is not
exercised by the tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.domain.events import SceneData
from monitor.errors import CatalogError

SAS_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
BLOB_SUFFIX = ".blob.core.windows.net"
# Renew this long before expiry: a read of a large COG can take minutes.
EXPIRY_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class SasToken:
    token: str  # the query string, without '?'
    expires: datetime

    def valid_at(self, now: datetime, margin: timedelta = EXPIRY_MARGIN) -> bool:
        return now + margin < self.expires


def blob_container(href: str) -> tuple[str, str] | None:
    """(storage account, container) of an Azure Blob URL, or None for any other URL."""
    parts = urlsplit(href)
    host = parts.hostname or ""
    if parts.scheme != "https" or not host.endswith(BLOB_SUFFIX):
        return None
    account = host[: -len(BLOB_SUFFIX)]
    container = parts.path.lstrip("/").split("/", 1)[0]
    if not account or not container:
        return None
    return account, container


def is_signed(href: str) -> bool:
    """True if the URL already carries a SAS signature (``sig``) parameter."""
    return any(key == "sig" for key, _ in parse_qsl(urlsplit(href).query))


def sign_href(href: str, token: str) -> str:
    """Append the SAS ``token`` to ``href``, keeping existing query parameters; a URL that
    is already signed, or not an Azure Blob URL, is returned unchanged."""
    if blob_container(href) is None or is_signed(href):
        return href
    parts = urlsplit(href)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend(parse_qsl(token.lstrip("?"), keep_blank_values=True))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, safe=":/"),
                       parts.fragment))


def parse_token_response(payload: dict[str, object]) -> SasToken:
    """The SAS endpoint answers ``{"token": "...", "msft:expiry": "2025-...Z"}``."""
    token, expiry = payload.get("token"), payload.get("msft:expiry")
    if not isinstance(token, str) or not isinstance(expiry, str):
        raise CatalogError(f"the Planetary Computer SAS endpoint answered {payload!r}",
                           "retry later; the read will be retried")
    expires = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return SasToken(token=token, expires=expires)


def fetch_sas_token(account: str, container: str, timeout_s: float = 30.0) -> SasToken:
    """Ask the public SAS endpoint for a token (network)."""
    import httpx

    url = f"{SAS_TOKEN_URL}/{account}/{container}"
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
        return parse_token_response(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        raise CatalogError(f"could not get a SAS token for {account}/{container}: {exc}",
                           "check the network to planetarycomputer.microsoft.com") from exc


class PlanetaryComputerSigner:
    """Signs hrefs with cached per-container tokens. Thread-safe."""

    def __init__(self, fetch: Callable[[str, str], SasToken] = fetch_sas_token,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._fetch = fetch
        self._clock = clock
        self._tokens: dict[tuple[str, str], SasToken] = {}
        self._lock = threading.Lock()

    def token_for(self, account: str, container: str) -> SasToken:
        with self._lock:
            cached = self._tokens.get((account, container))
            if cached is not None and cached.valid_at(self._clock()):
                return cached
            token = self._fetch(account, container)
            self._tokens[(account, container)] = token
            return token

    def sign(self, href: str) -> str:
        where = blob_container(href)
        if where is None or is_signed(href):
            return href
        return sign_href(href, self.token_for(*where).token)

    def sign_scene(self, scene: SceneData) -> SceneData:
        """A copy of ``scene`` whose asset hrefs are signed."""
        assets = {band: asset.model_copy(update={"href": self.sign(asset.href)})
                  for band, asset in scene.assets.items()}
        return scene.model_copy(update={"assets": assets})


def signer_for(signing: str) -> PlanetaryComputerSigner | None:
    """The signer a provider's ``signing`` setting asks for (None for 'none')."""
    return PlanetaryComputerSigner() if signing == "planetary-computer" else None
