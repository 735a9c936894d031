"""False alarms of the S1 path of the city state on real Sentinel-1 (OPERA RTC-S1, 15 bursts,
21 dates 2021-2025, central California coast, no construction): nothing may confirm."""

from __future__ import annotations

import pytest

from models.calibrate_state import OPERA_DIR, check_opera, load_predictors
from monitor.domain.state import StateParams


@pytest.mark.skipif(not OPERA_DIR.is_dir(),
                    reason=f"real data folder {OPERA_DIR} is absent (../shared/data)")
def test_no_confirmed_change_and_few_first_alerts_on_the_opera_series() -> None:
    predictors, sources = load_predictors()  # the shipped S1 model (or the baseline)
    totals = check_opera(StateParams(), predictors)
    print(sources["s1"], totals)
    assert totals["bursts"] == 15 and totals["observations"] == 315
    assert totals["confirmed"] == 0
    assert totals["ever_first_fraction"] < 0.01
