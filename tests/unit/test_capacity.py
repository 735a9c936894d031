"""The capacity model: a modelled world of urban centres, a day of arrivals, a queue."""

from __future__ import annotations

import numpy as np

from monitor.domain.capacity import (
    Arrival,
    StageCosts,
    capacity,
    day_of_arrivals,
    model_world,
    simulate,
)


def test_the_modelled_world_matches_the_urban_centre_database_in_count_and_people() -> None:
    world = model_world()
    assert world.n == 13_135
    assert 3.2e9 < world.population.sum() < 4.2e9  # GHS-UCDB 2015: ~3.5 billion
    assert world.area_km2.min() > 1 and 5_000 < world.area_km2.max() < 20_000
    assert 10 < np.median(world.area_km2) < 40


def test_a_day_brings_each_city_about_its_revisit_share_of_scenes() -> None:
    world = model_world()
    arrivals = day_of_arrivals(world)
    s2 = sum(a.modality == "s2" for a in arrivals)
    s1 = sum(a.modality == "s1" for a in arrivals)
    assert abs(s2 / world.n - 1.4 / 5) < 0.03 and abs(s1 / world.n - 2 / 12) < 0.03
    assert all(0 <= a.time_s < 86400 for a in arrivals)
    assert [a.time_s for a in arrivals] == sorted(a.time_s for a in arrivals)


def test_one_city_keeps_its_order_and_more_workers_never_hurt() -> None:
    costs = StageCosts(read_s_per_mpx=1, infer_s_per_mpx=0, update_s_per_mpx=0,
                       persist_s_per_mpx=0, per_scene_s=0)
    # two scenes of one 100 Mpx city at once: 100 s, then 200 s (it stays on one worker)
    arrivals = [Arrival(0.0, 0, "s2", 100.0), Arrival(0.0, 0, "s2", 100.0)]
    sim = simulate(arrivals, costs, 4)
    assert sim.max_s == 200.0 and sim.p50_s == 150.0
    world = model_world(n=500)
    day = day_of_arrivals(world)
    p95 = [simulate(day, StageCosts(), w).p95_s for w in (1, 2, 8)]
    assert p95[0] >= p95[1] >= p95[2]


def test_the_report_names_what_saturates_and_the_smallest_worker_count() -> None:
    slow = StageCosts(infer_s_per_mpx=200.0)
    report = capacity(slow, world=model_world(n=2000), machine_cores=4)
    assert report.workers > 4 and not report.one_machine_16_cores["meets_target"]
    assert "CPU" in report.saturates_first
    assert report.p95_s <= 1800
    fewer = [s for s in report.sweep if s["workers"] < report.workers]
    assert fewer and all(s["p95_s"] > 1800 for s in fewer)
    assert report.state_storage_gb_with_versions == 3 * report.state_storage_gb
