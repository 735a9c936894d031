"""Change sites on small arrays: stable ids, growth, splits by date, lifecycle, reports."""

from __future__ import annotations

import numpy as np

from monitor.domain.sites import SiteRules, SiteSummary, update_sites

H, W = 20, 30
RULES = SiteRules(link_px=2, split_days=60, min_confirmed_px=4, min_report_px=4,
                  confidence_step=0.05, area_step=0.05)


class Grid:
    """Per-pixel arrays of a tiny state, driven by hand."""

    def __init__(self) -> None:
        self.status = np.zeros((H, W), np.uint8)
        self.site = np.zeros((H, W), np.uint32)
        self.first = np.zeros((H, W), np.uint16)
        self.change = np.zeros((H, W), np.uint16)
        self.confirm = np.zeros((H, W), np.uint16)
        self.conf = np.zeros((H, W), np.float32)
        self.table: dict[int, SiteSummary] = {}
        self.next_id = 1

    def set(self, rows: slice, cols: slice, status: int, *, day: int, change: int,
            conf: float = 0.3) -> None:
        self.status[rows, cols] = status
        self.first[rows, cols] = np.where(self.first[rows, cols] == 0, day, self.first[rows, cols])
        self.change[rows, cols] = change
        if status == 3:
            self.confirm[rows, cols] = day
        self.conf[rows, cols] = conf

    def update(self, day: int, before: np.ndarray) -> list[SiteSummary]:
        changed = self.status != before
        reports, self.table, self.next_id = update_sites(
            self.status, self.site, self.first, self.change, self.confirm, self.conf,
            self.table, self.next_id, day, RULES, changed=changed)
        return reports

    def step(self, day: int, *changes: tuple[slice, slice, int, int]) -> list[SiteSummary]:
        before = self.status.copy()
        for rows, cols, status, change in changes:
            self.set(rows, cols, status, day=day, change=change)
        return self.update(day, before)


def test_separate_blobs_are_separate_sites_with_counter_ids() -> None:
    g = Grid()
    reports = g.step(100, (slice(2, 5), slice(2, 5), 1, 95), (slice(10, 13), slice(20, 23), 1, 96))
    assert sorted(r.site_id for r in reports) == [1, 2]
    assert {r.status for r in reports} == {"first"}
    assert g.site[3, 3] == 1 and g.site[11, 21] == 2
    assert all(r.n_pixels == 9 for r in reports)


def test_small_sites_are_tracked_but_not_reported_until_the_mapping_unit() -> None:
    g = Grid()
    assert g.step(100, (slice(2, 3), slice(2, 4), 1, 95)) == []  # 2 px < 4
    assert g.site[2, 2] == 1
    reports = g.step(105, (slice(2, 4), slice(2, 4), 1, 95))      # grows to 4 px
    assert [(r.site_id, r.n_pixels) for r in reports] == [(1, 4)]


def test_a_growing_site_keeps_its_id_and_neighbours_link_within_link_px() -> None:
    g = Grid()
    g.step(100, (slice(2, 5), slice(2, 5), 1, 95))
    # one column of gap (within link_px = 2): the new patch joins site 1
    reports = g.step(105, (slice(2, 5), slice(6, 9), 2, 97))
    assert set(np.unique(g.site[2:5, 6:9])) == {1} and g.site[3, 5] == 0  # gap column
    assert [(r.site_id, r.status, r.n_pixels) for r in reports] == [(1, "provisional", 18)]


def test_neighbouring_change_with_a_clearly_different_date_is_a_new_site() -> None:
    g = Grid()
    g.step(100, (slice(2, 5), slice(2, 5), 3, 95))
    # adjacent, but its change began 200 days later: another construction
    reports = g.step(300, (slice(2, 5), slice(5, 8), 1, 295))
    assert g.site[3, 3] == 1 and g.site[3, 6] == 2
    assert [r.site_id for r in reports] == [2]


def test_confirmed_is_final_and_its_footprint_is_the_confirmed_pixels() -> None:
    g = Grid()
    g.step(100, (slice(2, 5), slice(2, 5), 3, 95), (slice(2, 5), slice(5, 7), 1, 96))
    site = g.table[1]
    assert site.status == "confirmed" and site.n_pixels == 9 and site.n_confirmed == 9
    assert site.confirm_day == 100 and site.change_day == 95
    # the unconfirmed fringe is retracted: the site stays confirmed, footprint unchanged
    reports = g.step(140, (slice(2, 5), slice(5, 7), 4, 96))
    assert reports == []
    assert g.table[1].status == "confirmed"
    # a year later the state withdraws the confirmed pixels: its own terminal status
    reports = g.step(500, (slice(2, 5), slice(2, 5), 5, 95))
    assert [(r.site_id, r.status) for r in reports] == [(1, "withdrawn")]
    assert g.table[1].closed_day == 500


def _status_after(rules: SiteRules, rows: slice, status: int, day: int = 100) -> str:
    """The status of the one site a fresh grid gets when ``rows`` x 2 columns take
    ``status``."""
    g = Grid()
    before = g.status.copy()
    g.set(rows, slice(2, 4), status, day=day, change=95)
    _, table, _ = update_sites(g.status, g.site, g.first, g.change, g.confirm, g.conf, {}, 1,
                               day, rules, changed=g.status != before)
    return table[1].status


def test_a_site_warns_only_from_its_own_early_warning_unit_of_provisional_pixels() -> None:
    from dataclasses import replace

    rules = replace(RULES, min_provisional_px=8)
    assert _status_after(RULES, slice(2, 4), 2) == "provisional"   # default: the 4 px unit
    assert _status_after(rules, slice(2, 4), 2) == "first"         # 4 < 8 provisional px
    assert _status_after(rules, slice(2, 6), 2) == "provisional"   # 8 px
    # confirmation keeps the mapping unit: 4 confirmed px confirm
    assert _status_after(rules, slice(2, 4), 3) == "confirmed"


def test_a_retracted_site_is_reported_once_and_reopens_under_its_id() -> None:
    g = Grid()
    g.step(100, (slice(2, 5), slice(2, 5), 1, 95))
    reports = g.step(150, (slice(2, 5), slice(2, 5), 4, 95))
    assert [(r.site_id, r.status) for r in reports] == [(1, "retracted")]
    reports = g.step(400, (slice(2, 5), slice(2, 5), 1, 395))
    assert [(r.site_id, r.status) for r in reports] == [(1, "first")]
    assert g.next_id == 2


def test_site_change_date_is_the_median_of_its_pixels_not_the_earliest() -> None:
    g = Grid()
    before = g.status.copy()
    g.set(slice(2, 5), slice(2, 5), 3, day=100, change=90)
    g.set(slice(2, 3), slice(2, 3), 3, day=100, change=10)  # one stray early pixel
    reports = g.update(100, before)
    assert reports[0].change_day == 90


def test_confidence_moves_are_reported_only_beyond_the_step() -> None:
    g = Grid()
    g.step(100, (slice(2, 5), slice(2, 5), 2, 95))
    g.conf[2:5, 2:5] = 0.32  # +0.02: not material
    assert g.update(105, g.status.copy()) == []
    g.conf[2:5, 2:5] = 0.40  # +0.10 since reported
    reports = g.update(110, g.status.copy())
    assert [(r.site_id, r.confidence) for r in reports] == [(1, 0.4)]


def test_ids_never_repeat_over_a_long_random_history() -> None:
    rng = np.random.default_rng(0)
    g = Grid()
    seen: dict[int, int] = {}
    for k in range(60):
        day = 100 + 5 * k
        before = g.status.copy()
        r, c = int(rng.integers(0, H - 3)), int(rng.integers(0, W - 3))
        g.set(slice(r, r + 3), slice(c, c + 3), int(rng.integers(1, 4)), day=day, change=day - 3)
        if rng.random() < 0.3:  # something fades
            fade = (g.status == 1) & (rng.random((H, W)) < 0.5)
            g.status[fade] = 4
        for s in g.update(day, before):
            seen.setdefault(s.site_id, day)
    assert len(seen) == len(set(seen))
    assert max(g.table) < g.next_id
    # every active pixel has a site, and sites are exactly the labels in use
    active = np.isin(g.status, (1, 2, 3))
    assert (g.site[active] > 0).all()



def test_a_few_early_pixels_move_the_first_detection_not_the_change_date() -> None:
    # three pixels detected early (day 100, change 95), twelve later (day 130, change 125):
    # the site was first detected on day 100, and its change date is the robust value over
    # its pixels (125), not dragged to the early pixels
    g = Grid()
    before = g.status.copy()
    g.set(slice(2, 3), slice(2, 5), 2, day=100, change=95)
    g.set(slice(3, 7), slice(2, 5), 2, day=130, change=125)
    reports = g.update(130, before)
    assert reports[0].first_day == 100
    assert reports[0].change_day == 125
