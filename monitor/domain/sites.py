"""Change sites: the connected groups of changing pixels of a city state, with stable ids.

Pure numpy + scipy.ndimage. The state labels every pixel that ever became active (first,
provisional or confirmed) with a **site id** (``uint32``, a per-city counter, so ids are
deterministic and can never collide). After every update :func:`update_sites`:

1. gives newly active pixels a site: pixels linked (within ``link_px``) to an active site
   join the oldest such site — unless their estimated change date differs from the site's
   by more than ``split_days`` (two constructions side by side are two sites); linked
   pixels that reach no active site share a new site (or reopen the retracted site most of
   them belonged to before);
2. summarises every site the update touched: status, footprint pixels, first detection,
   confirmation and change dates (the median over its pixels: robust to a stray early
   pixel), confidence and bounding box;
3. returns the sites whose summary moved *materially* since they were last reported
   (status, dates, footprint by ``area_step``, confidence by ``confidence_step``), and
   sites reaching ``min_report_px`` for the first time. Smaller sites are tracked but not
   reported: they are below the minimum mapping unit.

Site lifecycle (what subscribers see as the alert status):

* ``first``: active pixels, fewer than ``min_confirmed_px`` of them provisional or beyond;
* ``provisional``: at least ``min_provisional_px`` provisional (or confirmed) pixels;
* ``confirmed``: at least ``min_confirmed_px`` confirmed pixels. **Confirmed is final**:
  the footprint of a confirmed site is its confirmed pixels and it never goes back to
  provisional or retracted; its confidence is the one it was confirmed with (reported
  again only with a footprint or status change);
* ``retracted``: every pixel of a site that never confirmed went back (evidence faded, or
  no confirmation within the state's window) — the early warning was withdrawn;
* ``withdrawn``: a confirmed site whose every confirmed pixel was later withdrawn by the
  state (a year of contrary evidence, ``StateParams.unconfirm_after_days``). Its own,
  documented terminal status (like OPERA DIST's "finished"), never a silent reversal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

ACTIVE_STATUS_CODES = (1, 2, 3)   # first, provisional, confirmed (monitor.domain.state.Status)
CONFIRMED_CODE = 3
SITE_STATUSES = ("first", "provisional", "confirmed", "retracted", "withdrawn")
TERMINAL = ("retracted", "withdrawn")


@dataclass(frozen=True)
class SiteRules:
    link_px: int = 2                 # pixels within this distance belong together (20 m)
    split_days: int = 90             # ... unless their change dates differ by more
    min_confirmed_px: int = 10       # confirmed pixels a site needs to confirm (0.1 ha)
    min_report_px: int = 10          # a site is reported from this many footprint pixels
    min_provisional_px: int = 0      # provisional-or-confirmed pixels a site needs to warn
                                     # (0: min_confirmed_px)
    confidence_step: float = 0.1     # smaller confidence moves are not reported
    area_step: float = 0.1           # footprint changes below this share are not reported
    date_step_days: int = 10         # an open site's estimated change date: smaller moves not


@dataclass(frozen=True)
class SiteSummary:
    """One site as last computed. Days are state days (since 2014-01-01), 0 = none."""

    site_id: int
    status: str
    n_pixels: int          # footprint pixels: confirmed pixels of a confirmed site, else active
    n_confirmed: int
    first_day: int
    confirm_day: int
    change_day: int
    confidence: float
    bbox: tuple[int, int, int, int]   # row0, col0, row1, col1 (exclusive) of the footprint
    reported: bool = False
    closed_day: int = 0    # the day it was retracted or withdrawn

    def to_json(self) -> list[Any]:
        return [self.status, self.n_pixels, self.n_confirmed, self.first_day, self.confirm_day,
                self.change_day, round(self.confidence, 4), list(self.bbox), int(self.reported),
                self.closed_day]

    @classmethod
    def from_json(cls, site_id: int, data: list[Any]) -> SiteSummary:
        return cls(site_id=site_id, status=str(data[0]), n_pixels=int(data[1]),
                   n_confirmed=int(data[2]), first_day=int(data[3]), confirm_day=int(data[4]),
                   change_day=int(data[5]), confidence=float(data[6]),
                   bbox=(int(data[7][0]), int(data[7][1]), int(data[7][2]), int(data[7][3])),
                   reported=bool(data[8]), closed_day=int(data[9]) if len(data) > 9 else 0)

    @property
    def active(self) -> bool:
        return self.status not in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_to_json(table: Mapping[int, SiteSummary]) -> dict[str, list[Any]]:
    return {str(k): v.to_json() for k, v in table.items()}


def table_from_json(data: Mapping[str, list[Any]]) -> dict[int, SiteSummary]:
    return {int(k): SiteSummary.from_json(int(k), v) for k, v in data.items()}


def _disk(radius: int) -> np.ndarray:
    r = max(0, int(radius))
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y) <= r * r + r  # a rounded square: diagonal neighbours at r link


def _group_medians(labels: np.ndarray, values: np.ndarray) -> dict[int, int]:
    """Median of ``values`` per label (labels > 0), by one sort."""
    if labels.size == 0:
        return {}
    order = np.lexsort((values, labels))
    lab, val = labels[order], values[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    ends = np.r_[starts[1:], lab.size]
    mid = (starts + ends - 1) // 2
    return {int(lab[s]): int(val[m]) for s, m in zip(starts, mid, strict=True)}


def _site_status(prev: SiteSummary | None, n_active: int, n_prov: int, n_conf: int,
                 rules: SiteRules) -> str:
    if prev is not None and prev.status in ("confirmed", "withdrawn"):
        return "confirmed" if n_conf > 0 else "withdrawn"
    if n_conf >= rules.min_confirmed_px:
        return "confirmed"
    if n_active == 0:
        return "retracted"
    if prev is not None and prev.status == "provisional":
        return "provisional"  # the lifecycle only moves forward while a site is open
    # provisional, like confirmed, needs a unit of such pixels, not one pixel
    unit = rules.min_provisional_px or rules.min_confirmed_px
    return "provisional" if (n_prov + n_conf) >= unit else "first"


def update_sites(status: np.ndarray, site: np.ndarray, first_day: np.ndarray,
                 change_day: np.ndarray, confirm_day: np.ndarray, confidence: np.ndarray,
                 table: dict[int, SiteSummary], next_id: int, day: int,
                 rules: SiteRules | None = None, changed: np.ndarray | None = None,
                 ) -> tuple[list[SiteSummary], dict[int, SiteSummary], int]:
    """Assign new active pixels to sites (writes ``site`` in place) and summarise.

    ``changed``: pixels whose status changed in this update (None: treat every site as
    touched). Returns (sites to report, the new table, the next free id).
    """
    rules = rules or SiteRules()
    table = dict(table)
    active = np.isin(status, ACTIVE_STATUS_CODES)
    open_ids = np.array(sorted(k for k, v in table.items() if v.active), dtype=np.int64)
    label_open = np.isin(site, open_ids) if open_ids.size else np.zeros(site.shape, bool)
    assigned = active & label_open
    unassigned = active & ~label_open
    touched: set[int] = set()
    if unassigned.any():
        linked = ndimage.binary_dilation(active, structure=_disk(rules.link_px)) if rules.link_px > 0 else active
        comp, _ = ndimage.label(linked, structure=np.ones((3, 3), bool))
        comp_u = comp[unassigned]
        # per component: the assigned (open) sites in it, and the old labels of new pixels
        comp_a = comp[assigned]
        site_a = site[assigned].astype(np.int64)
        old_u = site[unassigned].astype(np.int64)
        day_u = change_day[unassigned].astype(np.int64)
        new_labels = np.zeros(comp_u.shape, dtype=np.int64)
        order = np.argsort(comp_u, kind="stable")
        cu = comp_u[order]
        starts = np.flatnonzero(np.r_[True, cu[1:] != cu[:-1]])
        ends = np.r_[starts[1:], cu.size]
        comp_sites: dict[int, list[int]] = {}
        if comp_a.size:
            pairs = np.unique(np.stack([comp_a, site_a]), axis=1)
            for c, s in pairs.T.tolist():
                comp_sites.setdefault(int(c), []).append(int(s))
        for s0, e0 in zip(starts.tolist(), ends.tolist(), strict=True):
            idx = order[s0:e0]
            c = int(cu[s0])
            days = day_u[idx]
            days = days[days > 0]
            median_day = int(np.median(days)) if days.size else day
            target = 0
            for candidate in sorted(comp_sites.get(c, [])):
                summary = table.get(candidate)
                if summary is None or summary.change_day == 0 or \
                        abs(summary.change_day - median_day) <= rules.split_days:
                    target = candidate
                    break
            if target == 0:
                olds = old_u[idx]
                olds = olds[(olds > 0)]
                reopen = 0
                if olds.size:
                    values, counts = np.unique(olds, return_counts=True)
                    best = int(values[np.argmax(counts)])
                    prev = table.get(best)
                    if prev is not None and prev.status == "retracted" and \
                            counts.max() * 2 >= idx.size:
                        reopen = best
                if reopen:
                    target = reopen
                else:
                    target = next_id
                    next_id += 1
            new_labels[idx] = target
            touched.add(target)
        site[unassigned] = new_labels.astype(site.dtype)
    # Which sites to summarise: the ones with changed or new pixels, and every open one
    # when ``changed`` is not given.
    if changed is None:
        touched |= {int(k) for k in open_ids.tolist()}
        touched |= {int(s) for s in np.unique(site[active]).tolist() if s > 0}
    else:
        touched |= {int(s) for s in np.unique(site[changed]).tolist() if s > 0}
    # Confidence moves without status changes: cheap to check per open site via bincount.
    labels_active = site[active].astype(np.int64)
    n_lab = int(max(next_id, int(labels_active.max()) + 1 if labels_active.size else 1))
    conf_sum = np.bincount(labels_active, weights=confidence[active], minlength=n_lab)
    n_act = np.bincount(labels_active, minlength=n_lab)
    if changed is not None:
        for k in open_ids.tolist():
            prev = table[int(k)]
            if prev.status == "confirmed":
                continue  # its confidence is final (see _material)
            if k < n_lab and n_act[k] and abs(conf_sum[k] / n_act[k] - prev.confidence) >= rules.confidence_step:
                touched.add(int(k))
    if not touched:
        return [], table, next_id
    ids = np.array(sorted(touched), dtype=np.int64)
    in_touched = np.isin(site, ids) & active
    lab = site[in_touched].astype(np.int64)
    st = status[in_touched]
    conf_mask = st == CONFIRMED_CODE
    n_conf = np.bincount(lab[conf_mask], minlength=n_lab)
    n_prov = np.bincount(lab[st == 2], minlength=n_lab)
    rows, cols = np.nonzero(in_touched)
    first = first_day[in_touched].astype(np.int64)
    conf_days = confirm_day[in_touched].astype(np.int64)
    chg = change_day[in_touched].astype(np.int64)
    med_change_conf = _group_medians(lab[conf_mask & (chg > 0)], chg[conf_mask & (chg > 0)])
    med_change_all = _group_medians(lab[chg > 0], chg[chg > 0])
    reports: list[SiteSummary] = []
    order = np.argsort(lab, kind="stable")
    lab_sorted = lab[order]
    bounds = {}
    if lab_sorted.size:
        starts = np.flatnonzero(np.r_[True, lab_sorted[1:] != lab_sorted[:-1]])
        ends = np.r_[starts[1:], lab_sorted.size]
        for s0, e0 in zip(starts.tolist(), ends.tolist(), strict=True):
            bounds[int(lab_sorted[s0])] = order[s0:e0]
    for k in ids.tolist():
        prev = table.get(k)
        members = bounds.get(k)
        n_a = int(members.size) if members is not None else 0
        nc = int(n_conf[k]) if k < n_lab else 0
        npv = int(n_prov[k]) if k < n_lab else 0
        status_k = _site_status(prev, n_a, npv, nc, rules)
        if members is None or n_a == 0:
            if prev is None:
                continue
            summary = replace(prev, status=status_k, n_pixels=0, n_confirmed=0,
                              closed_day=prev.closed_day or day) \
                if status_k != prev.status else prev
        else:
            idx = members
            footprint = idx[conf_mask[idx]] if status_k in ("confirmed", "withdrawn") and nc else idx
            fr, fc = rows[footprint], cols[footprint]
            cdays = conf_days[idx][conf_mask[idx]]
            cdays = cdays[cdays > 0]
            change = med_change_conf.get(k) or med_change_all.get(k) or 0
            summary = SiteSummary(
                site_id=k, status=status_k, n_pixels=int(footprint.size), n_confirmed=nc,
                first_day=int(first[idx][first[idx] > 0].min()) if (first[idx] > 0).any() else day,
                confirm_day=int(cdays.min()) if cdays.size and status_k == "confirmed" else 0,
                change_day=int(change),
                confidence=round(float(conf_sum[k] / max(n_act[k], 1)), 4),
                bbox=(int(fr.min()), int(fc.min()), int(fr.max()) + 1, int(fc.max()) + 1),
                reported=prev.reported if prev is not None else False,
                closed_day=0)
            if prev is not None:
                # dates only move earlier while a site is open; a confirmed site keeps its
                # confirmation date and its change date
                if prev.first_day:
                    summary = replace(summary, first_day=min(prev.first_day, summary.first_day))
                if prev.status == "confirmed" and status_k == "confirmed":
                    summary = replace(summary, confirm_day=prev.confirm_day or summary.confirm_day,
                                      change_day=prev.change_day or summary.change_day)
                if status_k in TERMINAL:
                    summary = replace(summary, closed_day=prev.closed_day or day)
            # (the change day is the median of its pixels' change points: robust to a few
            # pixels detected early, so it can be later than the site's first detection,
            # the day its earliest pixel alerted)
        report = _material(prev, summary, rules)
        if report:
            summary = replace(summary, reported=True)
            reports.append(summary)
            table[k] = summary
        elif prev is None or not prev.reported:
            table[k] = summary  # not announced yet: track it until it reaches the unit
        # else: keep what was last reported, so slow drifts add up to a report
    return reports, table, next_id


def _material(prev: SiteSummary | None, new: SiteSummary, rules: SiteRules) -> bool:
    """Should ``new`` be reported (given what was reported before)?"""
    if prev is None or not prev.reported:
        return new.active and new.n_pixels >= rules.min_report_px
    if new.status != prev.status:
        return True
    if (new.first_day, new.confirm_day) != (prev.first_day, prev.confirm_day):
        return True
    if abs(new.change_day - prev.change_day) >= rules.date_step_days:
        return True
    # footprints flicker by a few pixels from scene to scene: a tenth of the site, and at
    # least half a mapping unit, is a change worth a revision
    if abs(new.n_pixels - prev.n_pixels) > max(rules.min_report_px / 2,
                                              rules.area_step * prev.n_pixels):
        return True
    if new.status == "confirmed":
        # A confirmation is final, and so is its confidence: the evidence of a confirmed
        # site keeps wobbling with every scene, and re-reporting it would make the cost of
        # a scene grow with the number of sites the city ever confirmed.
        return False
    return abs(new.confidence - prev.confidence) >= rules.confidence_step


def site_footprint(status: np.ndarray, site: np.ndarray, summary: SiteSummary) -> np.ndarray:
    """(window mask, (row0, col0)): the site's footprint pixels inside its bbox window."""
    r0, c0, r1, c1 = summary.bbox
    win_site = site[r0:r1, c0:c1] == summary.site_id
    win_status = status[r0:r1, c0:c1]
    if summary.status in ("confirmed", "withdrawn"):
        return win_site & (win_status == CONFIRMED_CODE)
    return win_site & np.isin(win_status, ACTIVE_STATUS_CODES)
