"""The per-city change state on small arrays: every lifecycle transition, idempotence,
late scenes, cloud masks, S1/S2 fusion, reference updates and orbit separation."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from monitor.domain.grid import CityGrid
from monitor.domain.state import (
    RUN_S1_BIT,
    RUN_S2_BIT,
    CityState,
    Observation,
    StateParams,
    Status,
    date_to_day,
    day_to_date,
)
from monitor.errors import ConfigError, ObservationError

H, W = 4, 5
GRID = CityGrid(epsg=32631, origin_x=500000.0, origin_y=700000.0, width=W, height=H)
D0 = date(2021, 3, 1)
# Simple, readable evidence: LLR = logit(p) (p=0.9 -> +2.197, p=0.1 -> -2.197).
PARAMS = StateParams(
    s2_llr_slope=1.0, s2_llr_offset=0.0, s1_llr_slope=1.0, s1_llr_offset=0.0,
    s2_weight=1.0, s1_weight=0.5, llr_clip=3.0,
    h_first=1.5, h_provisional=4.0, h_confirm=6.0, evidence_cap=10.0,
    n_provisional=3, n_confirm=3, window_days=60, unconfirm_after_days=100,
    late_after_days=10, s2_reference_count=2, s2_reference_alpha=0.5,
    s1_reference_count=2, s1_reference_alpha=0.5, s1_current_alpha=0.25, n_orbits=2,
    baseline_days=0,  # the lifecycle mechanics; the baseline period has its own tests
)
LLR_HIGH = float(np.log(9.0))  # logit(0.9)


def s2(i: int, p: float | np.ndarray | None = None, *, value: float = 0.2,
       valid: np.ndarray | None = None, day: date | None = None, sid: str | None = None
       ) -> Observation:
    values = np.full((6, H, W), value, dtype=np.float32)
    pc = None if p is None else np.broadcast_to(np.float32(p), (H, W)).astype(np.float32)
    return Observation(sid or f"s2-{i}", "s2", None, day or D0 + timedelta(days=5 * i),
                       values, np.ones((H, W), bool) if valid is None else valid, pc)


def s1(i: int, orbit: str, p: float | None = None, *, value: float = 0.5,
       day: date | None = None) -> Observation:
    values = np.full((1, H, W), value, dtype=np.float32)
    pc = None if p is None else np.full((H, W), p, dtype=np.float32)
    return Observation(f"s1-{orbit}-{i}", "s1", orbit, day or D0 + timedelta(days=6 * i),
                       values, np.ones((H, W), bool), pc)


def ready_state(params: StateParams = PARAMS) -> CityState:
    """A state whose S2 reference is built (two clear scenes on days 0 and 5)."""
    state = CityState.create(GRID, params)
    for i in range(params.s2_reference_count):
        assert state.apply(s2(i)).applied
    return state


def test_dates_are_uint16_days_since_2014() -> None:
    assert date_to_day(date(2014, 1, 2)) == 1
    assert date_to_day(date(2021, 3, 1)) == (date(2021, 3, 1) - date(2014, 1, 1)).days
    assert day_to_date(date_to_day(date(2024, 2, 29))) == date(2024, 2, 29)
    with pytest.raises(ValueError):
        date_to_day(date(2014, 1, 1))  # day 0 means "none"
    with pytest.raises(ValueError):
        day_to_date(0)


def test_state_fits_in_38_bytes_per_pixel_with_two_orbits() -> None:
    # 32 bytes of references, evidence and lifecycle + 4 for the site id + 2 for the last clear day
    state = CityState.create(GRID, StateParams(n_orbits=2))
    assert state.nbytes_per_pixel() == 38.0
    assert CityState.create(GRID, StateParams(n_orbits=1)).nbytes_per_pixel() == 33.0


def test_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="h_first"):
        StateParams(h_first=5.0, h_provisional=4.0)
    with pytest.raises(ConfigError, match="window_days"):
        StateParams(window_days=400)


def test_reference_is_the_mean_of_the_first_clear_observations() -> None:
    state = CityState.create(GRID, PARAMS)
    assert state.reference_for("s2") is None
    state.apply(s2(0, value=0.1))
    assert state.reference_for("s2") is None  # one of two observations
    state.apply(s2(1, value=0.3))
    ref, valid = state.reference_for("s2")
    assert valid.all()
    np.testing.assert_allclose(ref, 0.2, atol=1e-4)
    assert int(state.s2_count.max()) == 2


def test_without_p_change_only_the_reference_moves() -> None:
    state = ready_state()
    result = state.apply(s2(2, None, value=0.6))
    assert result.applied and result.n_evidence == 0
    assert not state.evidence.any()
    assert (state.status == Status.NONE).all()
    # stable pixels follow the new value with the EWMA rate (0.5): 0.2 -> 0.4
    np.testing.assert_allclose(state.reference_for("s2")[0], 0.4, atol=1e-4)


def test_none_to_first_records_first_and_change_day() -> None:
    state = ready_state()
    obs = s2(2, 0.9)
    result = state.apply(obs)
    assert result.transitions == {"none->first": H * W}
    assert (state.status == Status.FIRST).all()
    day = date_to_day(obs.acquired)
    assert (state.first_day == day).all() and (state.change_day == day).all()
    np.testing.assert_allclose(state.evidence, LLR_HIGH, atol=1e-3)
    assert (state.confirm_day == 0).all()
    assert (state.run_count == 1).all()


def test_a_weak_observation_below_h_first_starts_a_run_but_no_alert() -> None:
    state = ready_state()
    state.apply(s2(2, 0.7))  # logit(0.7) = 0.85 < 1.5
    assert (state.status == Status.NONE).all()
    assert (state.change_day == date_to_day(s2(2).acquired)).all()
    state.apply(s2(3, 0.7))  # 1.69 >= 1.5: first, but the change started at the run start
    assert (state.status == Status.FIRST).all()
    assert (state.first_day == date_to_day(s2(3).acquired)).all()
    assert (state.change_day == date_to_day(s2(2).acquired)).all()


def test_first_to_provisional_to_confirmed() -> None:
    state = ready_state()
    state.apply(s2(2, 0.9))
    result = state.apply(s2(3, 0.9))  # 4.39 >= h_provisional
    assert result.transitions == {"first->provisional": H * W}
    result = state.apply(s2(4, 0.9))  # 6.59 >= h_confirm and 3 anomalous observations
    assert result.transitions == {"provisional->confirmed": H * W}
    assert (state.confirm_day == date_to_day(s2(4).acquired)).all()
    assert (state.change_day == date_to_day(s2(2).acquired)).all()
    assert (state.first_day == date_to_day(s2(2).acquired)).all()
    assert state.summary()["confirmed"] == H * W
    assert (state.confidence() == 1.0).all()


def test_provisional_also_from_enough_anomalous_observations() -> None:
    params = StateParams(**{**PARAMS.to_dict(), "h_provisional": 9.0, "h_confirm": 9.5,
                            "n_provisional": 2})
    state = ready_state(params)
    state.apply(s2(2, 0.9))
    assert state.apply(s2(3, 0.9)).transitions == {"first->provisional": H * W}


def test_n_provisional_0_promotes_by_evidence_only() -> None:
    params = StateParams(**{**PARAMS.to_dict(), "h_provisional": 9.0, "h_confirm": 11.5,
                            "evidence_cap": 12.0, "n_provisional": 0})
    state = ready_state(params)
    for i in range(2, 6):  # four anomalous observations, evidence 8.8 < 9
        state.apply(s2(i, 0.9))
    assert (state.status == Status.FIRST).all() and state.evidence.max() < 9.0
    assert state.apply(s2(6, 0.9)).transitions == {"first->provisional": H * W}  # 10.99
    with pytest.raises(ConfigError, match="n_confirm"):
        StateParams(n_provisional=-1)


def test_confirmation_needs_persistence_not_one_strong_observation() -> None:
    params = StateParams(**{**PARAMS.to_dict(), "llr_clip": 8.0, "h_confirm": 6.0,
                            "n_confirm": 3})
    state = ready_state(params)
    state.apply(s2(2, 0.9999))  # LLR 8: above h_confirm at once
    assert state.evidence.min() >= 6.0
    assert (state.status == Status.PROVISIONAL).all()
    state.apply(s2(3, 0.9999))
    assert (state.status == Status.PROVISIONAL).all()  # two anomalous observations
    state.apply(s2(4, 0.9999))
    assert (state.status == Status.CONFIRMED).all()


def test_first_is_retracted_when_the_evidence_fades_and_can_come_back() -> None:
    state = ready_state()
    state.apply(s2(2, 0.9))
    result = state.apply(s2(3, 0.1))  # 2.197 - 2.197 = 0
    assert result.transitions == {"first->retracted": H * W}
    assert not state.evidence.any()
    assert (state.run_count == 0).all()
    assert state.apply(s2(4, 0.9)).transitions == {"retracted->first": H * W}
    assert (state.first_day == date_to_day(s2(4).acquired)).all()


def test_unconfirmed_alerts_expire_after_the_window_even_unobserved() -> None:
    state = ready_state()
    state.apply(s2(2, 0.9))
    # 61 days later a scene that sees none of the pixels (all cloud) still expires them.
    late_day = s2(2).acquired + timedelta(days=PARAMS.window_days + 1)
    result = state.apply(s2(99, 0.9, valid=np.zeros((H, W), bool), day=late_day))
    assert result.transitions == {"first->retracted": H * W}
    assert not state.evidence.any()


def test_confirmed_is_sticky_until_long_contrary_evidence() -> None:
    state = ready_state()
    for i in (2, 3, 4):
        state.apply(s2(i, 0.9))
    assert (state.status == Status.CONFIRMED).all()
    change_day = state.change_day.copy()
    confirm_day = state.confirm_day.copy()
    for i in range(5, 15):  # 50 days of normal observations drain the evidence
        state.apply(s2(i, 0.1))
    assert not state.evidence.any()
    assert (state.status == Status.CONFIRMED).all()
    state.apply(s2(15, 0.9))  # a new run does not move a confirmed change time
    np.testing.assert_array_equal(state.change_day, change_day)
    np.testing.assert_array_equal(state.confirm_day, confirm_day)
    state.apply(s2(16, 0.1))
    # 100 days after confirmation, with the evidence at zero: withdrawn, a status of its
    # own (a confirmation is never silently turned into a retraction).
    day = day_to_date(int(confirm_day[0, 0])) + timedelta(days=PARAMS.unconfirm_after_days)
    result = state.apply(s2(17, 0.1, day=day))
    assert result.transitions == {"confirmed->withdrawn": H * W}
    assert (state.status == Status.WITHDRAWN).all()


def test_applying_the_same_scene_twice_changes_nothing() -> None:
    state = ready_state()
    state.apply(s2(2, 0.9))
    before = {k: v.copy() for k, v in state.to_arrays().items()}
    version = state.version
    result = state.apply(s2(2, 0.9))
    assert result.outcome == "duplicate" and result.version == version
    assert state.version == version
    for name, array in state.to_arrays().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


def test_late_scenes_are_refused_and_out_of_order_within_the_limit_applied() -> None:
    state = ready_state()
    state.apply(s2(10, 0.5))  # day 50
    before = {k: v.copy() for k, v in state.to_arrays().items()}
    late = state.apply(s2(7, 0.9))  # day 35: 15 days before the last, limit 10
    assert late.outcome == "late" and "15 days" in (late.reason or "")
    for name, array in state.to_arrays().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)
    in_order = state.apply(s2(9, 0.9))  # day 45: 5 days before the last, applied
    assert in_order.applied
    assert (state.first_day == date_to_day(s2(9).acquired)).all()
    # lateness is per stream: an S1 scene from long ago is not late for S2's sake
    assert state.apply(s1(0, "A", day=D0)).applied


def test_remembered_scene_ids_stay_bounded() -> None:
    state = ready_state()
    for i in range(2, 40):
        state.apply(s2(i))
    # ids older than (last day - late_after_days) are forgotten; they would be 'late'.
    assert len(state.applied) <= PARAMS.late_after_days // 5 + 1
    assert state.apply(s2(3)).outcome == "late"
    assert state.apply(s2(39)).outcome == "duplicate"


def test_cloudy_pixels_give_no_evidence_and_keep_their_reference() -> None:
    state = ready_state()
    cloud = np.zeros((H, W), bool)
    cloud[:2] = True
    ref_before = state.reference_for("s2")[0].copy()
    count_before = state.s2_count.copy()
    result = state.apply(s2(2, 0.9, value=0.9, valid=~cloud))
    assert result.n_valid == result.n_evidence == int((~cloud).sum())
    assert not state.evidence[cloud].any()
    assert (state.status[cloud] == Status.NONE).all()
    assert (state.status[~cloud] == Status.FIRST).all()
    np.testing.assert_array_equal(state.reference_for("s2")[0][:, cloud], ref_before[:, cloud])
    np.testing.assert_array_equal(state.s2_count[cloud], count_before[cloud])
    assert (state.s2_count[~cloud] == count_before[~cloud] + 1).all()
    # many more scenes, all cloudy there: the stored reference stays bit-identical
    stored = state.to_arrays()["s2_reference"][:, cloud].copy()
    for i in range(3, 13):
        state.apply(s2(i, 0.1, value=0.05 * i, valid=~cloud))
    np.testing.assert_array_equal(state.to_arrays()["s2_reference"][:, cloud], stored)


def test_nan_values_are_not_observations() -> None:
    state = ready_state()
    obs = s2(2, 0.9)
    obs.values[3, 0, 0] = np.nan
    result = state.apply(obs)
    assert result.n_valid == H * W - 1
    assert state.status[0, 0] == Status.NONE


def test_s1_and_s2_evidence_fuse_with_their_weights() -> None:
    state = ready_state()
    for i in range(2):
        state.apply(s1(i, "A"))  # builds the orbit A reference
    state.apply(s1(2, "A", 0.9))
    np.testing.assert_allclose(state.evidence, 0.5 * LLR_HIGH, atol=1e-3)  # s1_weight 0.5
    assert (state.run_modalities == RUN_S1_BIT).all()
    state.apply(s2(2, 0.9))
    np.testing.assert_allclose(state.evidence, 1.5 * LLR_HIGH, atol=1e-3)
    assert (state.run_modalities == RUN_S1_BIT | RUN_S2_BIT).all()
    assert (state.run_count == 2).all()
    assert (state.status == Status.FIRST).all()


def test_reference_follows_only_stable_pixels() -> None:
    state = ready_state()
    p = np.full((H, W), 0.1, np.float32)
    p[0, 0] = 0.9  # one pixel changes
    state.apply(s2(2, p, value=0.4))
    ref = state.reference_for("s2")[0]
    np.testing.assert_allclose(ref[:, 0, 0], 0.2, atol=1e-4)  # frozen under evidence
    np.testing.assert_allclose(ref[:, 1, 1], 0.3, atol=1e-4)  # 0.2 + 0.5 * (0.4 - 0.2)


def test_s1_orbits_are_kept_apart() -> None:
    state = CityState.create(GRID, PARAMS)
    for i in range(2):
        state.apply(s1(i, "A", value=0.3))
        state.apply(s1(i, "B", value=0.7))
    ref_a, valid_a = state.reference_for("s1", "A")
    ref_b, _ = state.reference_for("s1", "B")
    assert ref_a.shape == (1, H, W) and valid_a.all()
    np.testing.assert_allclose(ref_a, 0.3, atol=1e-4)
    np.testing.assert_allclose(ref_b, 0.7, atol=1e-4)
    # the model input for a new orbit-A scene: reference vs running mean including it
    reference, current, valid = state.model_inputs(s1(2, "A", value=0.7))
    np.testing.assert_allclose(reference, 0.3, atol=1e-4)
    np.testing.assert_allclose(current, 0.3 + 0.25 * 0.4, atol=1e-4)
    assert valid.all()
    state.apply(s1(2, "A", value=0.7))
    np.testing.assert_allclose(state.s1_mean_for("A")[0], 0.4, atol=1e-4)
    np.testing.assert_allclose(state.s1_mean_for("B")[0], 0.7, atol=1e-4)
    third = state.apply(s1(0, "C"))
    assert third.outcome == "skipped" and "orbit C" in (third.reason or "")
    assert state.reference_for("s1", "C") is None


def test_s2_model_inputs_are_reference_and_scene() -> None:
    state = CityState.create(GRID, PARAMS)
    assert state.model_inputs(s2(0)) is None
    state.apply(s2(0))
    state.apply(s2(1))
    reference, observation, valid = state.model_inputs(s2(2, value=0.5))
    assert reference.shape == observation.shape == (6, H, W)
    np.testing.assert_allclose(observation, 0.5)
    assert valid.all()


@pytest.mark.parametrize("bad", ["shape", "bands", "orbit", "mask", "p"])
def test_bad_observations_raise_and_leave_the_state_untouched(bad: str) -> None:
    state = ready_state()
    before = {k: v.copy() for k, v in state.to_arrays().items()}
    obs = s2(2, 0.9)
    if bad == "shape":
        obs = Observation("x", "s2", None, D0, np.zeros((6, H, W + 1), np.float32), obs.valid)
    elif bad == "bands":
        obs = Observation("x", "s2", None, D0, np.zeros((4, H, W), np.float32), obs.valid)
    elif bad == "orbit":
        obs = Observation("x", "s1", None, D0, np.zeros((1, H, W), np.float32), obs.valid)
    elif bad == "mask":
        obs = Observation("x", "s2", None, D0, obs.values, obs.valid.astype(np.uint8))
    else:
        obs = Observation("x", "s2", None, D0, obs.values, obs.valid, np.zeros((2, 2), np.float32))
    with pytest.raises(ObservationError, match="scene x"):
        state.apply(obs)
    for name, array in state.to_arrays().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


def test_metadata_and_arrays_round_trip() -> None:
    state = ready_state()
    state.apply(s2(2, 0.9))
    state.apply(s1(0, "A"))
    again = CityState.from_parts(state.to_metadata(), state.copy().to_arrays())
    assert again.to_metadata() == state.to_metadata()
    assert again.summary() == state.summary()
    assert again.apply(s2(2, 0.9)).outcome == "duplicate"


def test_confirmation_waits_for_the_minimum_run_duration() -> None:
    params = StateParams(**{**PARAMS.to_dict(), "min_confirm_days": 12})
    state = ready_state(params)
    for i in (2, 3, 4):  # days 10, 15, 20: strong and persistent, but only 10 days long
        state.apply(s2(i, 0.9))
    assert (state.status == Status.PROVISIONAL).all()
    assert state.apply(s2(5, 0.9)).transitions == {"provisional->confirmed": H * W}
    assert (state.change_day == date_to_day(s2(2).acquired)).all()


# ----------------------------------------------------------------- baseline period
def test_the_baseline_period_builds_references_and_raises_nothing() -> None:
    params = StateParams(**{**PARAMS.to_dict(), "baseline_days": 30})
    state = CityState.create(GRID, params)
    # every scene of the first 30 days of the S2 stream says "change" with p = 0.99
    for i in range(6):  # days 0..25
        obs = s2(i, 0.99)
        assert state.in_baseline("s2", None, obs.acquired)
        assert state.model_inputs(obs) is None  # no model during warm-up
        assert state.apply(obs).applied
    assert not state.evidence.any()
    assert (state.status == Status.NONE).all()
    assert (state.s2_count == 6).all()  # ... but the references were built
    obs = s2(6, 0.99)  # day 30: monitoring starts
    assert not state.in_baseline("s2", None, obs.acquired)
    assert state.model_inputs(obs) is not None
    state.apply(obs)
    assert (state.status == Status.FIRST).all()


def test_each_stream_has_its_own_baseline_and_an_early_out_of_order_scene_extends_it() -> None:
    params = StateParams(**{**PARAMS.to_dict(), "baseline_days": 30})
    state = CityState.create(GRID, params)
    state.apply(s2(0))
    assert state.baseline_end_day("s2") == date_to_day(D0) + 30
    assert state.baseline_end_day("s1:a") is None  # this orbit has not started
    assert state.in_baseline("s1", "a", D0 + timedelta(days=100))  # its first scene
    state.apply(s1(20, "a"))  # day 120: the orbit's baseline runs from its own first scene
    assert state.baseline_end_day("s1:a") == date_to_day(D0) + 120 + 30
    state.apply(s2(-1))  # 5 days before the first S2 scene, within the lateness limit
    assert state.baseline_end_day("s2") == date_to_day(D0) - 5 + 30


def test_a_state_from_before_baselines_is_not_put_back_into_warm_up() -> None:
    state = ready_state()
    meta = state.to_metadata()
    meta.pop("first_day")
    old = CityState.from_parts(meta, state.to_arrays())
    assert not old.in_baseline("s2", None, D0 + timedelta(days=10))


# ----------------------------------------------------------------- time of change
def test_change_day_is_the_first_anomalous_observation_after_the_change() -> None:
    state = ready_state()  # references from days 0 and 5
    change_at = 6  # scenes every 5 days: the change happens on day 30
    for i in range(2, 12):
        state.apply(s2(i, 0.9 if i >= change_at else 0.1))
    assert (state.status == Status.CONFIRMED).all()
    assert (state.change_day == date_to_day(D0 + timedelta(days=5 * change_at))).all()


def test_a_stray_early_false_positive_does_not_pull_the_change_day_forward() -> None:
    state = ready_state()
    series = {2: 0.9, 3: 0.1, 4: 0.1, 5: 0.1}  # one false positive, then normal again
    for i in range(2, 14):
        state.apply(s2(i, series.get(i, 0.9 if i >= 8 else 0.1)))
    assert (state.status == Status.CONFIRMED).all()
    assert (state.change_day == date_to_day(D0 + timedelta(days=40))).all()


def test_each_pixel_knows_when_it_was_last_seen_clearly() -> None:
    state = CityState.create(GRID, PARAMS)
    assert (state.last_clear_day == 0).all()
    assert np.isnan(state.days_since_clear(D0)).all()
    state.apply(s2(0))
    cloudy = np.ones((H, W), bool)
    cloudy[0, :] = False  # the first row is under a cloud on day 5
    state.apply(s2(1, valid=cloudy))
    state.apply(s1(1, "a"))  # radar does not count as a clear optical view
    assert (state.last_clear_day[0] == date_to_day(D0)).all()
    assert (state.last_clear_day[1:] == date_to_day(D0 + timedelta(days=5))).all()
    since = state.days_since_clear(D0 + timedelta(days=35))
    assert (since[0] == 35).all() and (since[1:] == 30).all()


def test_each_site_logs_what_every_observation_said_about_it() -> None:
    from monitor.domain.site_log import FOLLOW_DAYS, KEEP_DAYS, entries_as_dicts

    state = ready_state()
    half_cloudy = np.ones((H, W), bool)
    half_cloudy[:, : W // 2] = False
    state.apply(s2(2, 0.9))
    state.apply(s2(3, 0.9, valid=half_cloudy))
    state.apply(s2(4, 0.9))
    state.apply(s2(5, 0.9))
    assert list(state.site_log) == [1]
    rows = entries_as_dicts(state.site_log[1])
    assert [r["date"] for r in rows] == [s2(i).acquired.isoformat() for i in (2, 3, 4, 5)]
    assert [r["site_status"] for r in rows][0] == "first"
    assert rows[-1]["site_status"] == "confirmed"
    # the cloudy half was seen once less: the site confirmed on the clear half first (the
    # footprint of a confirmed site is its confirmed pixels), then on all of it
    assert [r["footprint_px"] for r in rows] == [H * W, H * W, int(half_cloudy.sum()), H * W]
    assert [r["clear_px"] for r in rows] == [H * W, int(half_cloudy.sum()),
                                             int(half_cloudy.sum()), H * W]
    assert rows[1]["clear_share"] == round(half_cloudy.mean(), 3)
    assert all(r["p_change"] == 0.9 for r in rows)
    evidence = [r["evidence"] for r in rows]
    assert evidence == sorted(evidence) and evidence[0] < evidence[-1]
    # the log travels with the state
    again = CityState.from_parts(state.to_metadata(), state.copy().to_arrays())
    assert again.site_log == state.site_log
    # a confirmed site is followed for FOLLOW_DAYS, then frozen, then dropped
    confirmed = day_to_date(int(state.sites[1].confirm_day))
    state.apply(s2(90, 0.1, day=confirmed + timedelta(days=FOLLOW_DAYS + 1)))
    assert len(state.site_log[1]) == 4
    state.apply(s2(91, 0.1, day=confirmed + timedelta(days=KEEP_DAYS + 1)))
    assert state.site_log == {}


def test_the_site_log_reads_every_site_of_either_stream_in_its_own_window() -> None:
    from monitor.domain.site_log import entries_as_dicts

    h, w = 4, 12
    grid = CityGrid(epsg=32631, origin_x=500000.0, origin_y=700000.0, width=w, height=h)

    def obs(sid: str, modality: str, day: int, p: np.ndarray | float | None,
            values: np.ndarray | None = None) -> Observation:
        bands = 6 if modality == "s2" else 1
        v = np.full((bands, h, w), 0.2 if bands == 6 else 0.5, np.float32) if values is None \
            else values
        pc = None if p is None else np.broadcast_to(np.float32(p), (h, w)).astype(np.float32)
        return Observation(sid, modality, "a" if modality == "s1" else None,
                           D0 + timedelta(days=day), v, np.ones((h, w), bool), pc)

    state = CityState.create(grid, PARAMS)
    for d in (0, 5):
        state.apply(obs(f"s2-{d}", "s2", d, None))
        state.apply(obs(f"s1-{d}", "s1", d + 1, None))
    p = np.full((h, w), 0.1, np.float32)
    p[:, 0] = p[:, w - 1] = 0.9  # two columns 11 px apart: two sites
    state.apply(obs("s2-10", "s2", 10, p))
    assert sorted(state.site_log) == [1, 2]
    state.apply(obs("s1-12", "s1", 12, 0.9))  # radar scores both sites
    nan_left = np.full((6, h, w), 0.2, np.float32)
    nan_left[2, :, 0] = np.nan  # one band missing on the left site: not seen there
    state.apply(obs("s2-15", "s2", 15, p, nan_left))
    left, right = (entries_as_dicts(state.site_log[k]) for k in (1, 2))
    assert [r["stream"] for r in left] == ["s2", "s1:a", "s2"]
    assert [r["stream"] for r in right] == ["s2", "s1:a", "s2"]
    assert left[-1]["clear_px"] == 0 and left[-1]["p_change"] is None
    assert right[-1]["clear_px"] == h and right[-1]["p_change"] == 0.9
    assert left[1]["clear_px"] == h and left[1]["p_change"] == 0.9
    assert 0 < left[0]["evidence"] < right[-1]["evidence"] <= PARAMS.evidence_cap
