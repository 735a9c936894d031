"""The compiled per-pixel update of the change state (:mod:`monitor.domain.state`).

One pass over the pixels: evidence (CUSUM of calibrated LLRs), the lifecycle step and the
reference EWMAs, in straight-line numba code that writes the state's flat arrays in place.
:class:`monitor.domain.state.CityState.apply` prepares its arguments; STATE.md explains the
model. Kept apart so the state's lifecycle reads without the kernel's fixed-point detail.
"""

from __future__ import annotations

import numba
import numpy as np

from monitor.domain.vocabulary import Status

STATUS_NONE = int(Status.NONE)
STATUS_FIRST = int(Status.FIRST)
STATUS_PROVISIONAL = int(Status.PROVISIONAL)
STATUS_CONFIRMED = int(Status.CONFIRMED)
STATUS_RETRACTED = int(Status.RETRACTED)
STATUS_WITHDRAWN = int(Status.WITHDRAWN)
_N_STATUS = len(Status)

# The ``run`` byte: bits 0-5 count the anomalous observations (LLR > 0) of the current
# CUSUM run (saturating at 63); bit 6 is set when S2 contributed one, bit 7 when S1 did.
_RUN_COUNT_MASK = 0x3F
RUN_S2_BIT = 0x40
RUN_S1_BIT = 0x80
_RUN_FLAGS_MASK = RUN_S2_BIT | RUN_S1_BIT
# LLR lookup tables: p(change) is quantised to this many bins (finer than any model's
# calibration) so that an update needs no logarithm.
_LUT_SIZE = 4096
_P_EPS = 1e-4
# Fixed-point storage (uint16) of the continuous per-pixel quantities: predictable
# precision, half the bytes of float32, and usable from the compiled update kernel.
EVIDENCE_SCALE = 2048.0  # evidence 0..31.99 in steps of 0.0005
S2_SCALE = 50000.0  # reflectance 0..1.31 in steps of 2e-5
S1_SCALE = 65535.0  # scaled dB 0..1 in steps of 1.5e-5 (5e-4 dB)


def _llr_table(slope: float, offset: float, weight: float, clip: float) -> np.ndarray:
    centres = (np.arange(_LUT_SIZE, dtype=np.float64) + 0.5) / _LUT_SIZE
    centres = np.clip(centres, _P_EPS, 1 - _P_EPS)
    llr = np.clip(slope * np.log(centres / (1 - centres)) + offset, -clip, clip)
    return (weight * llr).astype(np.float32)


# The update kernel: one pass over the pixels, each pixel's whole lifecycle step in
# straight-line code (numba-compiled; a numpy version with masks was ~10 Mpx/s, dominated
# by temporaries). Arrays are flat views of the state; it writes them in place.
@numba.njit(cache=True, nogil=True, error_model="numpy",
            fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
def _apply_kernel(values, valid, p_change, has_p, lut, status, run, evidence, first_day,
                  change_day, confirm_lag, count, ref, cur, has_cur, day, modality_bit,
                  k_ref, alpha_ref, alpha_cur, scale, vmax, h_first, h_prov, h_conf, cap,
                  n_prov, n_conf, min_days, window, unconfirm_after, follow_normal,
                  transitions):  # pragma: no cover
    n_pix = status.size
    n_band = values.shape[0]
    lut_n = lut.size
    ev_scale = EVIDENCE_SCALE
    inv_ev_scale = 1.0 / EVIDENCE_SCALE
    inv_scale = np.float32(1.0 / scale)
    f_scale = np.float32(scale)
    f_vmax = np.float32(vmax)
    f_alpha_ref = np.float32(alpha_ref)
    f_alpha_cur = np.float32(alpha_cur)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    half = np.float32(0.5)
    # Pass 1 (vectorised): which pixels are observations at all.
    ok = np.empty(n_pix, dtype=np.bool_)
    for i in range(n_pix):
        ok[i] = valid[i]
    for b in range(n_band):
        for i in range(n_pix):
            ok[i] = ok[i] & np.isfinite(values[b, i])
    # Pass 2 (per pixel, branchy): evidence, lifecycle, and the reference update rate.
    rate_ref = np.empty(n_pix, dtype=np.float32)
    rate_cur = np.empty(n_pix if has_cur else 1, dtype=np.float32)
    n_valid = 0
    n_evid = 0
    for i in range(n_pix):
        s_old = status[i]
        s = s_old
        ev_q = evidence[i]
        r = run[i]
        rate = zero
        normal = True  # this observation gave no positive evidence
        # An alert that did not confirm within the window is retracted, observed or not.
        if (s == 1 or s == 2) and day - np.int64(first_day[i]) > window:
            s = 4
            ev_q = 0
            r = 0
        if ok[i]:
            n_valid += 1
            cnt = count[i]
            if has_p and cnt >= k_ref and np.isfinite(p_change[i]):
                n_evid += 1
                pb = p_change[i] * lut_n
                idx = 0 if pb < 0 else (lut_n - 1 if pb >= lut_n else np.int64(pb))
                llr = lut[idx]
                normal = llr <= 0
                ev = ev_q * inv_ev_scale
                new = min(max(ev + llr, 0.0), cap)
                new_q = np.uint16(np.int64(new * ev_scale + 0.5))
                if ev_q == 0 and new_q > 0 and s != 3:
                    change_day[i] = day  # the run leaves zero: the estimated time of change
                if new_q == 0:
                    r = 0
                elif llr > 0:
                    c = r & 0x3F
                    if c < 0x3F:
                        c += 1
                    r = (r & 0xC0) | c | modality_bit
                ev_q = new_q
                c = r & 0x3F
                if (s == 0 or s == 4 or s == 5) and new >= h_first:
                    s = 1
                    first_day[i] = day
                    confirm_lag[i] = 0
                if s == 1 and (new >= h_prov or c >= n_prov):
                    s = 2
                if s == 1 or s == 2:
                    lag = day - np.int64(first_day[i])
                    lasted = day - np.int64(change_day[i])
                    if new >= h_conf and c >= n_conf and lag <= window and lasted >= min_days:
                        s = 3
                        confirm_lag[i] = max(lag, 0) + 1
                    elif new_q == 0:
                        s = 4
                elif s == 3 and new_q == 0 and unconfirm_after > 0:
                    since = day - (np.int64(first_day[i]) + np.int64(confirm_lag[i]) - 1)
                    if since >= unconfirm_after:
                        s = 5  # withdrawn: a confirmation is never silently undone
            # References: the first k_ref valid observations are averaged, then an EWMA
            # follows pixels where nothing is going on (no evidence, no open alert).
            if cnt < k_ref:
                rate = one / (np.float32(cnt) + one)
            elif (s == 0 or s == 4 or s == 5) and (ev_q == 0 or (follow_normal and normal)):
                rate = f_alpha_ref
            if has_cur:
                rate_cur[i] = one / (np.float32(cnt) + one) if cnt < k_ref else f_alpha_cur
            if cnt < 255:
                count[i] = cnt + 1
        elif has_cur:
            rate_cur[i] = zero
        rate_ref[i] = rate
        evidence[i] = ev_q
        run[i] = r
        if s != s_old:
            # only changes are counted: a counter bumped for every pixel would chain each
            # iteration to the previous one through memory
            status[i] = s
            transitions[s_old, s] += 1
    # Pass 3 (vectorised): the EWMAs. A zero rate rewrites the same fixed-point value.
    for b in range(n_band):
        for i in range(n_pix):
            old = np.float32(ref[b, i]) * inv_scale
            rt = rate_ref[i]
            x = min(max(values[b, i], zero), f_vmax)
            d = rt * (x - old) if rt > zero else zero
            ref[b, i] = np.uint16(np.int32((old + d) * f_scale + half))
    if has_cur:
        for i in range(n_pix):
            old = np.float32(cur[i]) * inv_scale
            rt = rate_cur[i]
            x = min(max(values[0, i], zero), f_vmax)
            d = rt * (x - old) if rt > zero else zero
            cur[i] = np.uint16(np.int32((old + d) * f_scale + half))
    return (n_valid, n_evid)


def _transitions_dict(table: np.ndarray) -> dict[str, int]:
    out = {}
    for before in range(_N_STATUS):
        for after in range(_N_STATUS):
            if before != after and table[before, after]:
                key = f"{Status(before).name.lower()}->{Status(after).name.lower()}"
                out[key] = int(table[before, after])
    return out
