"""Time to process one scene of a 1 Mpx city, split by stage, S2 and S1 side by side
(issue 6): read (COG windows onto the city grid), mask, infer (ONNX change model), update
(the city state), persist (atomic state save), publish (regions + ChangeEvent).

The real InferenceWorker with the embedded bus and SQLite, one process, onnxruntime on one
thread, over the cached 10 km synthetic city of the load run (``var/load/``), its state
warmed on the first months so every timed scene runs the model. Figures go to
``var/benchmarks/inference_stages.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tools.reliability.load import (
    LoadOptions,
    copy_state,
    ensure_archive,
    ensure_warm_state,
    local_settings,
    register_scene,
    scene_events,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / "var" / "benchmarks" / "inference_stages.json"
STAGES = ("read", "mask", "infer", "update", "persist", "publish")
SCENES_PER_MODALITY = 3
CITY_ID = "stage-city"


@pytest.mark.benchmark
@pytest.mark.slow
def test_inference_stages_of_one_1mpx_scene(tmp_path: Path) -> None:
    from monitor.adapters.bus_embedded import EmbeddedBus
    from monitor.domain.grid import CityGrid
    from monitor.pipeline.runtime import build_runtime, build_worker

    opts = LoadOptions()
    archive = ensure_archive(opts.work_dir, size_km=opts.size_km, seed=opts.seed,
                             start=opts.archive_start, end=opts.archive_end, progress=False)
    warm = ensure_warm_state(archive, opts.work_dir, opts.warm_until, progress=False)
    settings = local_settings(archive, tmp_path, [CITY_ID])
    copy_state(warm, settings.state.url, [CITY_ID])
    runtime = build_runtime(settings, bus=EmbeddedBus(settings.bus.partitions))
    grid = CityGrid.from_aoi(archive.aoi)
    per_scene: dict[str, list[dict[str, float]]] = {"s2": [], "s1": []}
    other: dict[str, int] = {}
    try:
        worker = build_worker(runtime)
        for event in scene_events(archive, CITY_ID, after=opts.warm_until):
            modality = event.data.modality
            if all(len(v) >= SCENES_PER_MODALITY for v in per_scene.values()):
                break
            if len(per_scene[modality]) >= SCENES_PER_MODALITY:
                continue
            register_scene(runtime.db, event)
            before = asdict(worker.times)
            t0 = time.perf_counter()
            outcome = worker.handle(event)
            wall = time.perf_counter() - t0
            after = asdict(worker.times)
            split = {k: after[k] - before[k] for k in STAGES}
            if outcome.status != "processed" or split["infer"] <= 0:
                other[outcome.status] = other.get(outcome.status, 0) + 1
                continue  # a cloudy S2 scene is skipped after read+mask: not a full scene
            split["total"] = wall
            split["unattributed"] = wall - sum(split[k] for k in STAGES)
            per_scene[modality].append(split)
    finally:
        runtime.close()

    assert all(len(v) == SCENES_PER_MODALITY for v in per_scene.values()), per_scene
    columns = (*STAGES, "unattributed", "total")
    mean = {m: {k: sum(s[k] for s in rows) / len(rows) for k in columns}
            for m, rows in per_scene.items()}
    for m in mean:
        assert mean[m]["total"] > 0 and mean[m]["read"] > 0 and mean[m]["infer"] > 0
        assert mean[m]["total"] >= sum(mean[m][k] for k in STAGES) - 1e-6

    print(f"\nOne scene of a {grid.width}x{grid.height} px city (seconds, mean of "
          f"{SCENES_PER_MODALITY} scenes, onnxruntime 1 thread, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'stage':<14}{'S2':>10}{'S2 %':>8}{'S1':>10}{'S1 %':>8}")
    for k in columns:
        s2, s1 = mean["s2"][k], mean["s1"][k]
        print(f"{k:<14}{s2:>10.3f}{100 * s2 / mean['s2']['total']:>7.0f}%"
              f"{s1:>10.3f}{100 * s1 / mean['s1']['total']:>7.0f}%")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps({
        "city_px": [grid.height, grid.width], "scenes_per_modality": SCENES_PER_MODALITY,
        "models": settings.models.model_dump(), "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "mean_seconds": {m: {k: round(v, 4) for k, v in row.items()} for m, row in mean.items()},
        "per_scene": {m: [{k: round(v, 4) for k, v in s.items()} for s in rows]
                      for m, rows in per_scene.items()},
        "not_timed": other,
    }, indent=1))
