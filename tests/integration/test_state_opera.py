"""False alarms of the S1 path of the city state on real Sentinel-1 (OPERA RTC-S1, 15 bursts,
21 dates 2021-2025, central California coast, no construction): nothing may confirm.

The calibrated default gives S1 no weight with the shipped S1 model, which would make the
check empty, so it runs at the weights the calibration searched as well."""

from __future__ import annotations

import dataclasses

import pytest

from models.calibrate_state import OPERA_DIR, check_opera, load_predictors
from monitor.domain.state import StateParams


@pytest.mark.skipif(not OPERA_DIR.is_dir(),
                    reason=f"real data folder {OPERA_DIR} is absent (../shared/data)")
@pytest.mark.parametrize("s1_weight", [None, 0.25, 0.5])
def test_no_confirmed_change_and_few_first_alerts_on_the_opera_series(s1_weight: float | None) -> None:
    predictors, sources = load_predictors()  # the shipped S1 model (or the baseline)
    params = StateParams() if s1_weight is None else dataclasses.replace(StateParams(), s1_weight=s1_weight)
    totals = check_opera(params, predictors)
    print(sources["s1"], params.s1_weight, totals)
    assert totals["bursts"] == 15 and totals["observations"] == 315
    assert totals["confirmed"] == 0
    assert totals["ever_first_fraction"] < 0.01
