"""What scoring an S2 scene with radar context costs against the S2 model alone (issues 15
and 16: the fused path should cost at most ~1.5x the S2 path).

Where the orbit's reference did not cover every clear pixel (almost always: a few
speckle no-data pixels), the S2 model also ran over the whole scene for them, so a fused
scene paid for both networks. Now the dual model scores those pixels with neutral radar
when they are at most ``RADAR_NEUTRAL_SHARE`` of the scene (else the S2 model runs, over
their tiles only). Both are timed side by side on the same scenes: the real
InferenceWorker with the shipped ONNX models (onnxruntime on one thread) over the cached
10 km synthetic city of the load run (``var/load/``), its state warmed on the first
months. Each S2 scene with radar context is scored once by the worker; timing proxies
measure the dual model, any S2 run beside it (now) and, on the same inputs, the S2 model
over the whole scene (the S2-only path, and what those pixels cost before). Figures go
to ``var/benchmarks/fusion_cost.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
OUTPUT = REPO_ROOT / "var" / "benchmarks" / "fusion_cost.json"
FUSED_SCENES = 4
CITY_ID = "fusion-city"


@dataclass
class TimedS2:
    """The S2 model, timed when it scores pixels beside the dual model (``needed``)."""

    model: Any
    needed_s: list[float] = field(default_factory=list)

    @property
    def info(self) -> Any:
        return self.model.info

    def predict(self, reference: np.ndarray, observation: np.ndarray,
                valid: np.ndarray | None = None, needed: np.ndarray | None = None
                ) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.model.predict(reference, observation, valid, needed=needed)
        if needed is not None:
            self.needed_s.append(time.perf_counter() - t0)
        return np.asarray(out)


@dataclass
class TimedDual:
    """The dual model, timed; on the same S2 inputs the S2 model over the whole scene is
    timed too (the S2-only path, and what the radar-less pixels used to cost)."""

    model: Any
    s2: Any
    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def info(self) -> Any:
        return self.model.info

    def predict_dual(self, s2_ref: np.ndarray, s2_obs: np.ndarray, s1_ref: np.ndarray,
                     s1_obs: np.ndarray, valid: np.ndarray | None = None,
                     s1_valid: np.ndarray | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.model.predict_dual(s2_ref, s2_obs, s1_ref, s1_obs, valid, s1_valid=s1_valid)
        dual_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.s2.predict(s2_ref, s2_obs, valid)
        s2_whole_s = time.perf_counter() - t0
        assert valid is not None
        radarless = (valid & ~s1_valid) if s1_valid is not None else np.zeros_like(valid)
        self.rows.append({"dual_s": dual_s, "s2_whole_s": s2_whole_s,
                          "neutral_radar_share": float(radarless.sum() / max(valid.sum(), 1))})
        return np.asarray(out)


@pytest.mark.benchmark
@pytest.mark.slow
def test_fused_scene_cost_against_the_s2_model_alone(tmp_path: Path) -> None:
    from monitor.adapters.bus_embedded import EmbeddedBus
    from monitor.pipeline.runtime import build_runtime, build_worker

    opts = LoadOptions()
    archive = ensure_archive(opts.work_dir, size_km=opts.size_km, seed=opts.seed,
                             start=opts.archive_start, end=opts.archive_end, progress=False)
    warm = ensure_warm_state(archive, opts.work_dir, opts.warm_until, progress=False)
    settings = local_settings(archive, tmp_path, [CITY_ID])
    copy_state(warm, settings.state.url, [CITY_ID])
    runtime = build_runtime(settings, bus=EmbeddedBus(settings.bus.partitions))
    try:
        worker = build_worker(runtime)
        if worker.dual_model is None:
            pytest.skip("no dual model is configured (models.dual)")
        s2 = TimedS2(worker.s2_model)
        dual = TimedDual(worker.dual_model, worker.s2_model)
        worker.s2_model, worker.dual_model = s2, dual  # type: ignore[assignment]
        scenes: list[dict[str, float]] = []
        for event in scene_events(archive, CITY_ID, after=opts.warm_until):
            if len(scenes) >= FUSED_SCENES:
                break
            register_scene(runtime.db, event)
            n_dual, n_s2 = len(dual.rows), len(s2.needed_s)
            worker.handle(event)
            if len(dual.rows) == n_dual:
                continue  # S1, cloudy, or no radar context: not a fused scene
            row = dict(dual.rows[-1])
            row["s2_needed_s"] = sum(s2.needed_s[n_s2:])
            scenes.append(row)
    finally:
        runtime.close()

    assert len(scenes) == FUSED_SCENES, scenes
    mean = {k: float(np.mean([r[k] for r in scenes])) for k in scenes[0]}
    # before: the S2 model ran over the whole scene whenever any clear pixel lacked radar
    before = float(np.mean([r["dual_s"] + (r["s2_whole_s"] if r["neutral_radar_share"] > 0
                                           or r["s2_needed_s"] > 0 else 0.0) for r in scenes]))
    now = mean["dual_s"] + mean["s2_needed_s"]
    s2_path = mean["s2_whole_s"]
    print(f"\nFused S2 scene of the 1000x1000 px load city (mean of {len(scenes)} scenes, "
          f"onnxruntime 1 thread, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs); clear pixels without radar: "
          f"{mean['neutral_radar_share']:.2%}")
    print(f"  S2 model alone (the S2-only path)        {s2_path:7.3f} s   1.00x")
    print(f"  dual + S2 over the whole scene (before)  {before:7.3f} s   {before / s2_path:.2f}x")
    print(f"  dual, neutral radar where none (now)     {now:7.3f} s   {now / s2_path:.2f}x")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps({
        "scenes": scenes, "mean_seconds": mean, "before_s": before, "now_s": now,
        "s2_path_s": s2_path, "ratio_before": before / s2_path, "ratio_now": now / s2_path,
        "cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()],
    }, indent=1))
    assert mean["neutral_radar_share"] > 0, "no scene lacked radar anywhere: nothing compared"
    assert now < before  # one network instead of two
