"""STAC API adapter (pystac-client): item search with retries, paging and client-side order.

It only translates: pystac-client/requests/urllib3 errors become :class:`CatalogError`
naming the API, the collection and what to do. Items come back as plain dicts (the
domain maps them); nothing here knows about cities or events.

Retries: timeouts, connection errors, HTTP 429 and 5xx are retried by urllib3 with
exponential backoff and jitter, honouring ``Retry-After``. Paging follows ``next`` links
(GET or POST, with body merging) and is capped, so a server that loops cannot hang us.
Results are sorted client-side (acquisition time, id): many servers cannot sort.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from urllib3 import Retry

from monitor.domain.scenes import sort_key
from monitor.errors import CatalogError

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
QUERY_CONFORMANCE_MARK = "item-search#query"
MAX_PAGES = 1000


def retry_policy(max_retries: int, backoff_s: float, backoff_max_s: float = 60.0) -> Retry:
    """urllib3 retry: exponential backoff with jitter, Retry-After respected, POST included
    (a STAC search is a read even when sent as POST)."""
    return Retry(
        total=max_retries, connect=max_retries, read=max_retries, status=max_retries, other=0,
        backoff_factor=backoff_s, backoff_jitter=backoff_s / 2, backoff_max=backoff_max_s,
        status_forcelist=RETRY_STATUSES, allowed_methods=None,
        respect_retry_after_header=True, raise_on_status=False,
    )


def _rfc3339(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


class StacCatalog:
    """One STAC API. Thread-safe: each thread gets its own HTTP session (pystac-client's
    ``Client`` and its ``requests.Session`` are not meant to be shared across threads)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, max_retries: int = 4,
                 backoff_s: float = 1.0, page_size: int = 100,
                 headers: Mapping[str, str] | None = None,
                 modifier: Callable[[Any], None] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.page_size = page_size
        self.headers = dict(headers or {})
        self.modifier = modifier
        self._local = threading.local()
        self._lock = threading.Lock()
        self._requests = 0

    # -- counters ------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        """HTTP requests issued so far (landing pages and search pages; not the retries)."""
        return self._requests

    def _count_request(self, request: Any) -> None:
        with self._lock:
            self._requests += 1

    # -- plumbing ------------------------------------------------------------------------
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        from pystac_client import Client
        from pystac_client.exceptions import APIError
        from pystac_client.stac_api_io import StacApiIO

        stac_io = StacApiIO(max_retries=retry_policy(self.max_retries, self.backoff_s))
        try:
            # Client.open re-applies headers, timeout and request_modifier to the StacApiIO
            # (resetting any not given here), so they are passed here, not to StacApiIO.
            client = Client.open(self.url, stac_io=stac_io, modifier=self.modifier,
                                 headers=self.headers, timeout=self.timeout_s,
                                 request_modifier=self._count_request)
        except (APIError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CatalogError(
                f"STAC API {self.url} did not answer with a usable landing page: "
                f"{_short(exc)}",
                "check the provider URL in the settings and that the API is up; "
                "the next poll retries") from None
        self._local.client = client
        return client

    def supports_query(self) -> bool:
        """Whether the API declares the query extension (server-side property filters)."""
        conforms = self._client().get_conforms_to() or []
        return any(QUERY_CONFORMANCE_MARK in c for c in conforms)

    # -- search --------------------------------------------------------------------------
    def search(self, collection: str, *, intersects: Mapping[str, Any] | None = None,
               bbox: tuple[float, float, float, float] | None = None,
               start: datetime | None = None, end: datetime | None = None,
               query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """All items of ``collection`` matching the filters, in acquisition order.

        ``query`` is sent only if the API declares the query extension (servers that do
        not know it may answer nothing at all); callers filter client-side anyway.
        Raises :class:`CatalogError` after the retries are spent or on a garbage answer.
        """
        from pystac_client.exceptions import APIError

        client = self._client()
        params: dict[str, Any] = {"collections": [collection], "limit": self.page_size}
        if intersects is not None:
            params["intersects"] = dict(intersects)
        if bbox is not None:
            params["bbox"] = list(bbox)
        if start is not None or end is not None:
            params["datetime"] = (f"{_rfc3339(start) if start else '..'}/"
                                  f"{_rfc3339(end) if end else '..'}")
        if query and self.supports_query():
            params["query"] = dict(query)
        what = f"search of {collection} at {self.url}"
        items: dict[str, dict[str, Any]] = {}
        try:
            search = client.search(method="POST", **params)
            for n_pages, page in enumerate(search.pages_as_dicts(), start=1):
                if not isinstance(page, dict) or not isinstance(page.get("features"), list):
                    raise CatalogError(f"{what}: a page is not a GeoJSON FeatureCollection",
                                       "the server answered garbage; the next poll retries")
                for feature in page["features"]:
                    if not isinstance(feature, dict):
                        raise CatalogError(f"{what}: a feature is not a JSON object",
                                           "the server answered garbage; the next poll retries")
                    # Keyed by id: a server that repeats items across pages yields each once.
                    items[str(feature.get("id"))] = feature
                if n_pages >= MAX_PAGES:
                    log.warning("%s: stopped after %d pages (%d items); narrow the search "
                                "window or raise the page size", what, n_pages, len(items))
                    break
        except CatalogError:
            raise
        except APIError as exc:
            status = getattr(exc, "status_code", None)
            detail = f"HTTP {status}: {_short(exc)}" if status else _short(exc)
            raise CatalogError(
                f"{what} failed after {self.max_retries} retries ({detail})",
                "the API is down, slow or rate-limiting; the other cities go on and "
                "the next poll retries this one") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # JSON decode errors and pages that are not STAC objects land here.
            raise CatalogError(f"{what}: the answer is not a STAC ItemCollection "
                               f"({type(exc).__name__}: {_short(exc)})",
                               "the server answered garbage; the next poll retries") from None
        return sorted(items.values(), key=sort_key)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
