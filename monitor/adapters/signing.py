"""Planetary Computer URL signing (optional adapter).

Planetary Computer assets live in Azure Blob Storage and need a short-lived SAS token
appended to the URL. Scene events carry *unsigned* hrefs (a token in an event would expire
while the event waits on the bus); whoever reads the raster signs the href right before
opening it, with a token cached per (storage account, container) until shortly before it
expires. Nothing here runs at import time.

Tokens come through Microsoft's ``planetary-computer`` package
(``planetary_computer.sas.get_token``): its token endpoint (``sas_url``, the public one by
default), its subscription key (``Ocp-Apim-Subscription-Key``: higher rate limits; from the
provider's ``subscription_key`` setting or the package's own ``PC_SDK_SUBSCRIPTION_KEY``)
and its token cache. Two measured reasons keep a little of our own around it: the
package's retry policy (10 retries, backoff 0.8 s doubling) can block a scene for minutes
while the endpoint is down -- longer than a Kafka consumer may go without polling -- so
we ask for 2 retries and let the scene be retried by the consume loop; and its
``sign_url`` appends ``?token`` blindly, so hrefs are signed by :func:`sign_href` (keeps an
existing query). The package's settings are process-wide (its design): the signer sets
them when it is built. ``tests/integration/test_signing_pc.py`` runs it against a local
fake of the token endpoint with recorded responses.
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


def package_token_fetcher(subscription_key: str | None = None, sas_url: str | None = None,
                          retries: int = 2) -> Callable[[str, str], SasToken]:
    """A token fetcher through the ``planetary-computer`` package, configured with the
    subscription key and token endpoint given (else the package's own settings)."""
    import planetary_computer
    import requests
    from planetary_computer.sas import get_token
    from planetary_computer.settings import Settings as PcSettings

    if subscription_key:
        planetary_computer.set_subscription_key(subscription_key)
    if sas_url:
        PcSettings.get().sas_url = sas_url.rstrip("/")

    def fetch(account: str, container: str) -> SasToken:
        try:
            token = get_token(account, container, retry_total=retries,
                              retry_backoff_factor=0.5)
        except (requests.RequestException, ValueError) as exc:  # HTTP errors, bad JSON
            raise CatalogError(
                f"could not get a SAS token for {account}/{container} from "
                f"{PcSettings.get().sas_url}: {exc}",
                "check the network to planetarycomputer.microsoft.com and the provider's "
                "subscription_key; the scene will be retried") from exc
        expires = token.expiry if token.expiry.tzinfo else token.expiry.replace(tzinfo=UTC)
        return SasToken(token=token.token, expires=expires)

    return fetch


def fetch_sas_token(account: str, container: str) -> SasToken:
    """A token from the package's configured endpoint (network)."""
    return package_token_fetcher()(account, container)


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


def signer_for(signing: str, *, subscription_key: str | None = None,
               sas_url: str | None = None) -> PlanetaryComputerSigner | None:
    """The signer a provider's ``signing`` setting asks for (None for 'none'), with the
    provider's Planetary Computer subscription key and token endpoint."""
    if signing != "planetary-computer":
        return None
    return PlanetaryComputerSigner(fetch=package_token_fetcher(subscription_key, sas_url))
