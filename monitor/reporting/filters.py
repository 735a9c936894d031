"""The dashboard's alert filters, for the downloads: the same parameters as the page's
URL (``status``, ``date_field``, ``from``, ``to``, ``min_confidence``, ``min_area_ha``),
applied to stored alerts. ``services/static/app.js`` applies the same rules on the page
(``matchesFilters``); the browser tests check that the two agree."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from monitor.domain.records import StoredAlert
from monitor.domain.vocabulary import ALERT_STATUSES, DEFAULT_FEED_STATUSES
from monitor.errors import RequestError

DATE_FIELDS = ("first_detected", "confirmed", "change_date")


@dataclass(frozen=True)
class AlertFilter:
    statuses: tuple[str, ...] = DEFAULT_FEED_STATUSES
    date_field: str = "first_detected"
    date_from: date | None = None
    date_to: date | None = None
    min_confidence: float = 0.0
    min_area_m2: float = 0.0

    def matches(self, alert: StoredAlert) -> bool:
        if alert.status not in self.statuses:
            return False
        if alert.confidence < self.min_confidence or alert.area_m2 < self.min_area_m2:
            return False
        if self.date_from is None and self.date_to is None:
            return True
        day = getattr(alert, self.date_field)
        if day is None:  # e.g. no confirmation date: outside any confirmation range
            return False
        return ((self.date_from is None or day >= self.date_from)
                and (self.date_to is None or day <= self.date_to))

    def apply(self, alerts: Iterable[StoredAlert]) -> list[StoredAlert]:
        return [a for a in alerts if self.matches(a)]


def _date(name: str, text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RequestError(name, f"'{text}' is not a date", "give YYYY-MM-DD") from None


def parse_filter(*, status: str | None, date_field: str | None, date_from: str | None,
                 date_to: str | None, min_confidence: float | None,
                 min_area_ha: float | None) -> AlertFilter:
    """The filter of the query parameters; ``status`` is a comma list or ``all``, absent
    = the default feed (provisional + confirmed)."""
    if status is None or status == "":
        statuses = DEFAULT_FEED_STATUSES
    elif status == "all":
        statuses = ALERT_STATUSES
    else:
        statuses = tuple(s for s in status.split(",") if s)
        bad = [s for s in statuses if s not in ALERT_STATUSES]
        if bad:
            raise RequestError("status", f"'{bad[0]}' is not a status",
                               f"use 'all' or some of {list(ALERT_STATUSES)}, comma-separated")
    field = date_field or "first_detected"
    if field not in DATE_FIELDS:
        raise RequestError("date_field", f"'{field}' is not a date of an alert",
                           f"use one of {list(DATE_FIELDS)}")
    lo, hi = _date("from", date_from), _date("to", date_to)
    if lo and hi and lo > hi:
        raise RequestError("from", f"{lo} is after to={hi}", "give from <= to")
    return AlertFilter(statuses=statuses, date_field=field, date_from=lo, date_to=hi,
                       min_confidence=float(min_confidence or 0.0),
                       min_area_m2=float(min_area_ha or 0.0) * 10_000.0)
