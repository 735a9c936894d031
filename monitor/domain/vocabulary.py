"""The words every layer shares, defined once: the day epoch of the state's date arrays,
the lifecycle statuses of pixels and alerts, and UTC timestamps.

Pure standard library. ``monitor.domain.state`` stores dates as ``uint16`` days since
:data:`DAY_EPOCH` (0 = none) and statuses as :class:`Status` codes; the alerting, the
vectoriser, the maps, the API and the demo all read those arrays, so they import the
epoch, the conversions and the status names from here instead of spelling them again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from typing import Literal, get_args

DAY_EPOCH = date(2014, 1, 1)
MAX_DAY = 65535
# State day + this = days since 1970-01-01 (the synthetic truth and scoring count those).
UNIX_DAY_OFFSET = (DAY_EPOCH - date(1970, 1, 1)).days


def date_to_day(day: date) -> int:
    """Days since 2014-01-01 as stored in the state (1..65535; 0 means "none")."""
    n = (day - DAY_EPOCH).days
    if not 1 <= n <= MAX_DAY:
        raise ValueError(
            f"date {day} cannot be stored: state days run from {DAY_EPOCH + timedelta(days=1)} "
            f"to {DAY_EPOCH + timedelta(days=MAX_DAY)}"
        )
    return n


def day_to_date(day: int) -> date:
    """Inverse of :func:`date_to_day`; ``0`` (none) is refused, test for it first."""
    if not 1 <= int(day) <= MAX_DAY:
        raise ValueError(f"day {day} is not a stored date (0 means none)")
    return DAY_EPOCH + timedelta(days=int(day))


class Status(IntEnum):
    """Lifecycle of a pixel's change alert (the ``status`` array holds these codes)."""

    NONE = 0
    FIRST = 1
    PROVISIONAL = 2
    CONFIRMED = 3
    RETRACTED = 4   # an alert that never confirmed went back (evidence faded / window)
    WITHDRAWN = 5   # a confirmed pixel withdrawn after a year of contrary evidence

    @property
    def label(self) -> str:
        """The status as events, alerts and the API spell it: ``"confirmed"``."""
        return self.name.lower()


# The lifecycle of an alert (AlertEvent, alert rows, the API's ``status`` filter), in
# order; each is also a pixel status code.
AlertStatus = Literal["first", "provisional", "confirmed", "retracted", "withdrawn"]
ALERT_STATUSES: tuple[str, ...] = get_args(AlertStatus)
# What the default feeds carry (OGC items without a status filter, the dashboard, a new
# subscription): alerts worth acting on. First detections, retractions and withdrawals are
# there on request (status=...).
DEFAULT_FEED_STATUSES: tuple[str, ...] = ("provisional", "confirmed")
ALERT_STATUS_CODES: dict[int, str] = {int(Status[s.upper()]): s for s in ALERT_STATUSES}
# Statuses that show on the time-of-change maps (retracted and none do not).
ACTIVE_STATUSES: tuple[Status, ...] = (Status.FIRST, Status.PROVISIONAL, Status.CONFIRMED)


def status_code(name: str) -> int:
    """``"confirmed"`` -> 3 (KeyError for a name that is not an alert status)."""
    if name not in ALERT_STATUSES:
        raise KeyError(f"'{name}' is not a status; use one of {list(ALERT_STATUSES)}")
    return int(Status[name.upper()])


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC (as databases return it)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """RFC 3339 with a ``Z``: ``2024-03-01T10:00:00Z``."""
    return as_utc(value).isoformat().replace("+00:00", "Z")
