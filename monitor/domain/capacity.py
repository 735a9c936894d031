"""A capacity model: what it takes to watch every urban centre on Earth at every revisit.

Pure numpy. From measured per-stage costs (seconds per megapixel of a city, and fixed
seconds per scene, measured by ``tests/benchmarks/test_bench_history.py`` and the demo),
a day of real Sentinel-2 and Sentinel-1 arrivals over the world's urban centres is
simulated through N single-threaded workers, and the report gives, for the smallest N that
keeps p95 discovery -> alert within the target, the cores, memory, state storage, Kafka
partitions and database rows, and what saturates first.

The urban centres (source, stated in the report): the GHS Urban Centre Database 2015
(GHS-UCDB R2019A, Florczyk et al., JRC 2019) lists **13,135 urban centres** (contiguous
1 km cells of >= 1,500 inhabitants/km2 with >= 50,000 inhabitants), together ~3.5 billion
people. The database is not shipped here (no internet), so its size distribution is
modelled: population Zipf-distributed (Pareto, exponent 1.1, from 50,000 to 40 million —
Zipf's law holds for urban centres) and density log-normal around 5,000 inhabitants/km2
(sigma 0.6, at least the definition's 1,500), which gives 3.7 billion people (the database:
~3.5 billion) on ~840,000 km2, a median centre of ~21 km2 and a largest of ~11,500 km2 (the
scale of the Pearl River Delta's or Tokyo's urban centre).

Arrivals: Sentinel-2 passes at ~10:30 local solar time, every 5 days per relative orbit
with two satellites (10 with one); a city in the overlap of two orbits gets two passes per
cycle. Sentinel-1 passes at ~06:00/18:00, every 12 days per orbit with one satellite (6
with two), 2 relative orbits on average. Scenes are published after a latency
(S2 ~2-6 h, S1 ~1-3 h) and discovered at the next poll (15 / 30 min). The sun moves 15
degrees of longitude an hour, so passes arrive in waves around the planet: the simulation
places each city by a longitude drawn from the real distribution of urban population by
longitude (a mixture matching Asia, Europe/Africa and the Americas).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

N_URBAN_CENTRES = 13_135
PIXEL_AREA_KM2 = 1e-4          # 10 m pixels
STATE_BYTES_PER_PIXEL = 38     # monitor/domain/STATE.md


@dataclass(frozen=True)
class StageCosts:
    """Measured costs of one scene. Per megapixel of the city (the scene is read and
    modelled on the city grid) and fixed per scene; seconds on one core."""

    read_s_per_mpx: float = 0.35
    infer_s_per_mpx: float = 2.6        # the dual-stream model (~2x the S2 one, 1.3 s/Mpx)
    update_s_per_mpx: float = 0.25      # state kernel + sites
    persist_s_per_mpx: float = 0.15     # a full state version written
    per_scene_s: float = 0.25           # registry, publish, alerting (per-site: flat)
    s1_infer_share: float = 0.0         # S1 scenes run no model at S1 weight 0

    def scene_seconds(self, mpx: np.ndarray, modality: str) -> np.ndarray:
        infer = self.infer_s_per_mpx * (1.0 if modality == "s2" else self.s1_infer_share)
        per_mpx = self.read_s_per_mpx + infer + self.update_s_per_mpx + self.persist_s_per_mpx
        return mpx * per_mpx + self.per_scene_s


@dataclass(frozen=True)
class World:
    """The modelled urban centres: area (km2) and longitude (degrees)."""

    area_km2: np.ndarray
    longitude: np.ndarray
    population: np.ndarray

    @property
    def n(self) -> int:
        return int(self.area_km2.size)


def model_world(n: int = N_URBAN_CENTRES, seed: int = 0, zipf_exponent: float = 1.1,
                density_median: float = 5000.0, density_sigma: float = 0.6) -> World:
    """Urban centres with a Zipf population and a log-normal density (see module doc)."""
    rng = np.random.default_rng(seed)
    p_min, p_max = 50_000.0, 40_000_000.0
    u = rng.random(n)
    a = zipf_exponent
    # inverse CDF of a Pareto(a) truncated to [p_min, p_max]
    lo, hi = p_min ** -a, p_max ** -a
    population = (lo - u * (lo - hi)) ** (-1.0 / a)
    density = density_median * np.exp(rng.normal(0.0, density_sigma, n))
    density = np.maximum(density, 1500.0)
    area = population / density
    # longitude: ~55 % of urban population in Asia (60..150 E), ~25 % Europe/Africa
    # (-20..60), ~20 % the Americas (-125..-35)
    region = rng.choice(3, size=n, p=(0.55, 0.25, 0.20))
    centres = np.array([105.0, 20.0, -80.0])
    spreads = np.array([22.0, 20.0, 22.0])
    longitude = np.clip(centres[region] + spreads[region] * rng.standard_normal(n), -180, 180)
    return World(area_km2=area, longitude=longitude, population=population)


@dataclass(frozen=True)
class Arrival:
    time_s: float       # discovery time (seconds since the day's start, UTC)
    city: int
    modality: str
    mpx: float


def day_of_arrivals(world: World, seed: int = 1, s2_revisit_days: float = 5.0,
                    s1_repeat_days: float = 12.0, s1_orbits: float = 2.0,
                    s2_overlap_share: float = 0.4) -> list[Arrival]:
    """One day of discovered scenes: each city's S2 pass with probability (1 + overlap) /
    revisit, each S1 orbit pass with probability 1 / repeat; pass times follow local solar
    time; published after a latency; discovered at the next poll."""
    rng = np.random.default_rng(seed)
    out: list[Arrival] = []
    mpx = world.area_km2 / PIXEL_AREA_KM2 / 1e6
    for c in range(world.n):
        lon = float(world.longitude[c])
        n_s2 = rng.poisson((1.0 + s2_overlap_share) / s2_revisit_days)
        for _ in range(n_s2):
            t = ((10.5 - lon / 15.0) % 24) * 3600 + rng.normal(0, 600)
            t += rng.uniform(2, 6) * 3600                   # publication latency
            t = math.ceil(t / 900.0) * 900.0                # the next 15-min poll
            out.append(Arrival(t % 86400, c, "s2", float(mpx[c])))
        n_s1 = rng.poisson(s1_orbits / s1_repeat_days)
        for _ in range(n_s1):
            local = 6.0 if rng.random() < 0.5 else 18.0
            t = ((local - lon / 15.0) % 24) * 3600 + rng.uniform(1, 3) * 3600
            t = math.ceil(t / 1800.0) * 1800.0
            out.append(Arrival(t % 86400, c, "s1", float(mpx[c])))
    out.sort(key=lambda a: a.time_s)
    return out


@dataclass
class Simulation:
    workers: int
    p50_s: float
    p95_s: float
    max_s: float
    busy_share: float
    scenes: int


def simulate(arrivals: list[Arrival], costs: StageCosts, workers: int) -> Simulation:
    """Scenes through ``workers`` single-threaded workers; a city stays on one worker (its
    partition), so its scenes are processed in order there. Latency = finish - discovery.
    The day is run twice back to back so the second day starts with the first's backlog."""
    owner = {}
    load = np.zeros(workers)
    # cities -> workers by balancing their expected work (as partition assignment would)
    by_city: dict[int, float] = {}
    for a in arrivals:
        by_city[a.city] = by_city.get(a.city, 0.0) + float(
            costs.scene_seconds(np.array([a.mpx]), a.modality)[0])
    for city, work in sorted(by_city.items(), key=lambda kv: -kv[1]):
        w = int(np.argmin(load))
        owner[city] = w
        load[w] += work
    free_at = np.zeros(workers)
    latencies = []
    busy = 0.0
    for day in (0, 1):
        for a in arrivals:
            t = a.time_s + day * 86400.0
            w = owner[a.city]
            start = max(t, free_at[w])
            cost = float(costs.scene_seconds(np.array([a.mpx]), a.modality)[0])
            free_at[w] = start + cost
            busy += cost
            if day == 1:
                latencies.append(free_at[w] - t)
    lat = np.asarray(latencies)
    return Simulation(workers=workers, p50_s=float(np.percentile(lat, 50)),
                      p95_s=float(np.percentile(lat, 95)), max_s=float(lat.max()),
                      busy_share=busy / (2 * 86400.0 * workers), scenes=len(arrivals))


@dataclass
class CapacityReport:
    target_p95_s: float
    centres: int
    total_area_km2: float
    total_population: float
    largest_km2: float
    median_km2: float
    scenes_per_day: dict[str, int]
    workers: int
    p50_s: float
    p95_s: float
    busy_share: float
    state_storage_gb: float
    state_storage_gb_with_versions: float
    hot_state_memory_gb: float
    kafka_partitions: int
    registry_rows_per_year: int
    one_machine_16_cores: dict[str, Any] = field(default_factory=dict)
    saturates_first: str = ""
    sweep: list[dict[str, float]] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def capacity(costs: StageCosts | None = None, *, target_p95_s: float = 1800.0,
             world: World | None = None, keep_versions: int = 3, machine_cores: int = 16,
             machine_memory_gb: float = 128.0, max_workers: int = 4096) -> CapacityReport:
    """The smallest worker count meeting ``target_p95_s``, and what one machine does."""
    costs = costs or StageCosts()
    world = world or model_world()
    arrivals = day_of_arrivals(world)
    sweep: list[dict[str, float]] = []
    lo, hi = 1, max_workers
    best: Simulation | None = None
    while lo <= hi:  # p95 falls as workers are added: bisect
        mid = (lo + hi) // 2
        sim = simulate(arrivals, costs, mid)
        sweep.append({"workers": mid, "p95_s": round(sim.p95_s, 1),
                      "busy_share": round(sim.busy_share, 3)})
        if sim.p95_s <= target_p95_s:
            best, hi = sim, mid - 1
        else:
            lo = mid + 1
    assert best is not None, "no worker count up to max_workers meets the target"
    pixels = world.area_km2 / PIXEL_AREA_KM2
    storage = float(pixels.sum()) * STATE_BYTES_PER_PIXEL / 1e9
    per_day = {"s2": sum(a.modality == "s2" for a in arrivals),
               "s1": sum(a.modality == "s1" for a in arrivals)}
    # memory: a worker keeps the states of its cities warm (the design); a machine with less
    # memory than all the states must read each city's state back for every scene instead,
    # which costs about what writing it costs
    hot = storage
    cold = hot > machine_memory_gb * 0.75
    machine_costs = costs
    if cold:
        from dataclasses import replace as _replace

        machine_costs = _replace(costs, persist_s_per_mpx=2 * costs.persist_s_per_mpx)
    one = simulate(arrivals, machine_costs, machine_cores)
    saturates = []
    if one.p95_s > target_p95_s:
        saturates.append(f"CPU: {machine_cores} cores are busy {one.busy_share:.0%} of the "
                         f"day and p95 latency is {one.p95_s / 3600:.1f} h")
    if cold:
        saturates.append(f"memory: the states of every city are {hot:.0f} GB, more than "
                         f"{machine_memory_gb:.0f} GB can keep warm; each scene then reads "
                         "its city's state from the store (counted above as a second "
                         "persist per scene)")
    return CapacityReport(
        target_p95_s=target_p95_s, centres=world.n, total_area_km2=float(world.area_km2.sum()),
        total_population=float(world.population.sum()),
        largest_km2=float(world.area_km2.max()), median_km2=float(np.median(world.area_km2)),
        scenes_per_day=per_day, workers=best.workers, p50_s=best.p50_s, p95_s=best.p95_s,
        busy_share=best.busy_share, state_storage_gb=storage,
        state_storage_gb_with_versions=storage * keep_versions,
        hot_state_memory_gb=hot, kafka_partitions=max(best.workers, machine_cores) * 2,
        registry_rows_per_year=int((per_day["s2"] + per_day["s1"]) * 365),
        one_machine_16_cores={"workers": machine_cores, "p50_s": one.p50_s, "p95_s": one.p95_s,
                              "busy_share": one.busy_share, "states_warm_in_memory": not cold,
                              "meets_target": one.p95_s <= target_p95_s},
        saturates_first="; ".join(saturates) or "nothing: one machine keeps up",
        sweep=sorted(sweep, key=lambda s: s["workers"]), costs=asdict(costs))
