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
    RETRACTED = 4

    @property
    def label(self) -> str:
        """The status as events, alerts and the API spell it: ``"confirmed"``."""
        return self.name.lower()


# Code -> name of every status an alert (or a changed pixel) can have, in lifecycle order.
STATUS_NAMES: dict[int, str] = {int(s): s.label for s in Status if s is not Status.NONE}
ALERT_STATUSES: tuple[str, ...] = tuple(STATUS_NAMES.values())
# Statuses that show on the time-of-change maps (retracted and none do not).
ACTIVE_STATUSES: tuple[Status, ...] = (Status.FIRST, Status.PROVISIONAL, Status.CONFIRMED)


def status_code(name: str) -> int:
    """``"confirmed"`` -> 3 (KeyError for a name that is not a status)."""
    return int(Status[name.upper()]) if name in ALERT_STATUSES else _unknown_status(name)


def _unknown_status(name: str) -> int:
    raise KeyError(f"'{name}' is not a status; use one of {list(ALERT_STATUSES)}")


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC (as databases return it)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """RFC 3339 with a ``Z``: ``2024-03-01T10:00:00Z``."""
    return as_utc(value).isoformat().replace("+00:00", "Z")
