"""Each change site's observation log: what every scene said about the site's pixels.

An analyst verifying an alert wants to see, scene by scene, whether the site was seen
clearly, what the change model said there and how the evidence moved. The state keeps
that per site, in its metadata, while it matters: from the site's first detection until
:data:`FOLLOW_DAYS` after it confirmed or closed (the log is then frozen), and drops it
:data:`KEEP_DAYS` after that (so a state's size stays bounded by its recent sites, never
by its history). At most :data:`MAX_ENTRIES` entries per site, the newest kept.

One entry (a JSON list, compact on purpose: it is saved with every state version)::

    [day, stream, footprint_px, clear_px, p_mean, evidence_mean, status]

* ``day``: state day of the observation (days since 2014-01-01);
* ``stream``: ``"s2"`` or ``"s1:<relative orbit>"``;
* ``footprint_px``: the site's footprint after the update (its confirmed pixels once
  confirmed, else its active pixels; for the scene that closed it, every pixel it had);
* ``clear_px``: footprint pixels this observation saw (clear S2, valid S1);
* ``p_mean``: mean calibrated p(change) over those pixels (null: no model ran — baseline,
  reference still building, or radar at weight zero);
* ``evidence_mean``: mean CUSUM evidence over the footprint after the update;
* ``status``: the site's status after the update.

Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from monitor.domain.sites import ACTIVE_STATUS_CODES, CONFIRMED_CODE, SiteSummary

MAX_ENTRIES = 80
FOLLOW_DAYS = 120   # observations are still logged this long after confirmation / closure
KEEP_DAYS = 365     # a frozen log is dropped this long after confirmation / closure

SiteLog = dict[int, list[list[Any]]]


def _settled_day(site: SiteSummary) -> int:
    """The day after which the site's story is told (0: still open)."""
    if site.closed_day:
        return site.closed_day
    if site.status == "confirmed":
        return site.confirm_day
    return 0


def log_observation(log: SiteLog, sites: Mapping[int, SiteSummary], *, site: np.ndarray,
                    status: np.ndarray, evidence: np.ndarray, valid: np.ndarray,
                    values: np.ndarray, p_change: np.ndarray | None, day: int, stream: str,
                    evidence_scale: float = 1.0) -> None:
    """Append this observation to the log of every site it concerns, and drop old logs.

    ``site``, ``status``, ``evidence`` (stored units: divided by ``evidence_scale``) and
    ``valid`` are (H, W) arrays after the update, ``values`` the observation's (C, H, W)
    bands (a pixel is seen where valid and every band finite); ``p_change`` (H, W) or None.
    Everything is read in each site's window only (the update's hot path stays O(sites))."""
    for site_id in [k for k in log if k not in sites]:
        del log[site_id]
    for site_id, summary in sites.items():
        settled = _settled_day(summary)
        if settled and day - settled > KEEP_DAYS:
            log.pop(site_id, None)
            continue
        if settled and day - settled > FOLLOW_DAYS:
            continue
        if not summary.active and site_id not in log:
            continue  # closed before it was ever logged (e.g. a state older than logs)
        if not summary.active and settled != day:
            continue  # closed earlier: only the closing observation is logged
        r0, c0, r1, c1 = summary.bbox
        if r1 <= r0 or c1 <= c0:
            continue
        window = (slice(r0, r1), slice(c0, c1))
        own = site[window] == site_id
        codes = status[window]
        if summary.status == "confirmed":
            footprint = own & (codes == CONFIRMED_CODE)
        else:
            footprint = own & np.isin(codes, ACTIVE_STATUS_CODES)
        if not footprint.any():
            footprint = own
        n_footprint = int(footprint.sum())
        if n_footprint == 0:
            continue
        seen = footprint & valid[window] & np.all(np.isfinite(values[(slice(None), *window)]),
                                                  axis=0)
        p_mean: float | None = None
        if p_change is not None and seen.any():
            p_seen = p_change[window][seen]
            p_seen = p_seen[np.isfinite(p_seen)]
            if p_seen.size:
                p_mean = round(float(p_seen.mean()), 3)
        mean_evidence = float(evidence[window][footprint].mean()) / evidence_scale
        entry = [int(day), stream, n_footprint, int(seen.sum()), p_mean,
                 round(mean_evidence, 2), summary.status]
        entries = log.setdefault(site_id, [])
        if entries and entries[-1][0] == day and entries[-1][1] == stream:
            entries[-1] = entry  # the same acquisition again (a second tile of one pass)
        else:
            entries.append(entry)
        del entries[:-MAX_ENTRIES]


def log_to_json(log: SiteLog) -> dict[str, list[list[Any]]]:
    return {str(k): v for k, v in log.items()}


def log_from_json(data: Mapping[str, list[list[Any]]] | None) -> SiteLog:
    return {int(k): [list(e) for e in v] for k, v in (data or {}).items()}


def entries_as_dicts(entries: list[list[Any]]) -> list[dict[str, Any]]:
    """Log entries as JSON objects with dates (what the API's timeline carries)."""
    from monitor.domain.vocabulary import day_to_date

    out = []
    for day, stream, n_footprint, n_clear, p_mean, evidence, status in entries:
        out.append({"date": day_to_date(int(day)).isoformat(), "stream": stream,
                    "modality": "s2" if stream == "s2" else "s1",
                    "footprint_px": n_footprint, "clear_px": n_clear,
                    "clear_share": round(n_clear / n_footprint, 3) if n_footprint else 0.0,
                    "p_change": p_mean, "evidence": evidence, "site_status": status})
    return out
