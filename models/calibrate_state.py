"""Calibrate the city change state (``monitor.domain.state.StateParams``) on data with truth.

1. Replay a synthetic archive (``monitor.synthetic``: construction sites with dates, and the
   confusers — cropland, seasonal vegetation, seasonal water) scene by scene through the
   production reader and the state, exactly as the inference worker does; collect (p, truth)
   samples per modality and fit the LLR mapping (``monitor.domain.calibration.fit_llr``).
2. Replay again with the fitted mapping over a small grid of S1 weights and thresholds,
   score the confirmed pixels with ``monitor.domain.scoring.score_change`` and keep the
   best (object F1, then pixel F1, then fewest false alerts).
3. Check false alarms on the real OPERA RTC-S1 series (``../shared/data/s1-rtc-opera``: no
   construction): the S1 path must confirm nothing there.

p(change) comes from the ONNX change models when their artifacts exist
(``models/artifacts/change_s2`` / ``change_s1``) and from the classical baselines
(``monitor.domain.evidence``) otherwise; the report says which.

    python -m models.calibrate_state --archive var/synthetic/state-calib --out var/calibration
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from tqdm import tqdm

from monitor.adapters.raster import RasterioSceneReader
from monitor.domain.calibration import class_separation, fit_llr, sample_labels
from monitor.domain.evidence import s1_change_probability, s2_change_probability
from monitor.domain.grid import CityGrid
from monitor.domain.masks import s1_valid_mask
from monitor.domain.normalisation import s1_from_linear
from monitor.domain.scenes import scene_from_item
from monitor.domain.scoring import ChangePrediction, ChangeTruth, score_change
from monitor.domain.state import CityState, Observation, StateParams, date_to_day
from monitor.domain.vocabulary import ALERT_STATUSES, UNIX_DAY_OFFSET, Status

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
OPERA_DIR = REPO_ROOT / ".." / "shared" / "data" / "s1-rtc-opera" / "10SGD" / "137"
# state days (since 2014-01-01) -> truth days (since 1970-01-01)
STATE_TO_EPOCH_DAYS = UNIX_DAY_OFFSET  # state day -> days since 1970-01-01
S2_ASSETS = {b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22", "scl")}
S1_ASSETS = {"vv": "vv", "vh": "vh"}

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Scene:
    scene_id: str
    modality: str
    orbit: str | None
    acquired: date
    values: np.ndarray
    valid: np.ndarray


def load_predictors(models_dir: Path | None = None) -> tuple[dict[str, Predictor], dict[str, str]]:
    """ONNX models (shipped artifacts, or ``models_dir/change_{s2,s1}.onnx``) where they
    exist, the classical baselines otherwise."""
    predictors: dict[str, Predictor] = {"s2": s2_change_probability, "s1": s1_change_probability}
    sources = {
        "s2": "baseline: S2 change-vector magnitude (monitor.domain.evidence)",
        "s1": "baseline: S1 3-month-mean dB increase (monitor.domain.evidence)",
    }
    try:
        from monitor.adapters.onnx_model import OnnxChangeModel
    except ImportError:  # pragma: no cover - onnxruntime is a runtime dependency
        return predictors, sources
    for modality in ("s2", "s1"):
        name: str | Path = f"change_{modality}"
        if models_dir is not None:
            name = models_dir / f"change_{modality}.onnx"
        try:
            model = OnnxChangeModel.load(name)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the baseline
            log.info("no %s change model (%s): using the baseline", modality, exc)
            continue
        predictors[modality] = model.predict
        sources[modality] = f"onnx: {model.info.id} ({model.path})"
    return predictors, sources


def read_archive(
    root: Path,
    progress: bool = True,
) -> tuple[CityGrid, list[Scene], np.ndarray, np.ndarray, dict[str, Any]]:
    """Every scene of a synthetic archive on its grid (in time order) and its truth."""
    from monitor.synthetic.archive import load_archive

    archive = load_archive(root)
    reader = RasterioSceneReader()
    scenes: list[Scene] = []
    items = archive.items()
    for item in tqdm(items, desc="read archive", unit="scene", disable=not progress):
        s2 = item["collection"].startswith("sentinel-2")
        scene = scene_from_item(
            item,
            city_id="calib",
            provider="synthetic",
            stac_api="file://",
            collection=item["collection"],
            modality="s2" if s2 else "s1",
            asset_keys=S2_ASSETS if s2 else S1_ASSETS,
        )
        if s2:
            raster = reader.read_s2(scene, archive.grid)
            values, orbit = raster.values, None
        else:
            raster = reader.read_s1(scene, archive.grid, ("vv",))
            values = s1_from_linear(raster.values)
            orbit = f"{scene.orbit_state or 'unknown'}-{scene.relative_orbit or 0}"
        if not raster.valid.any():
            continue
        scenes.append(
            Scene(
                scene.item_id,
                scene.modality,
                orbit,
                scene.acquired.date(),
                values.astype(np.float32),
                raster.valid,
            )
        )
    with rasterio.open(archive.truth.change_date) as src:
        change_date = src.read(1).astype(np.int32)
    with rasterio.open(archive.truth.site_labels) as src:
        site_labels = src.read(1).astype(np.int32)
    return archive.grid, scenes, change_date, site_labels, archive.manifest


PCache = dict[str, np.ndarray]


def replay(
    grid: CityGrid,
    scenes: list[Scene],
    params: StateParams,
    predictors: dict[str, Predictor],
    truth_change: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    horizon_days: int = 120,
    p_cache: PCache | None = None,
    record: bool = False,
) -> tuple[CityState, dict[str, tuple[list[np.ndarray], list[np.ndarray]]], PCache]:
    """Drive a fresh state through ``scenes`` as the worker does; optionally sample (p, truth).

    ``record``: keep every p (float16) by scene id. ``p_cache``: reuse recorded p instead of
    running the model — an approximation (the references, hence p, depend a little on the
    parameters) that makes a threshold search affordable with the learned models.
    """
    state = CityState.create(grid, params)
    samples: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"s2": ([], []), "s1": ([], [])}
    recorded: PCache = {}
    for scene in scenes:
        obs = Observation(
            scene.scene_id,
            scene.modality,  # type: ignore[arg-type]
            scene.orbit,
            scene.acquired,
            scene.values,
            scene.valid,
        )
        p = None
        if p_cache is not None:
            cached = p_cache.get(scene.scene_id)
            p = None if cached is None else cached.astype(np.float32)
        else:
            inputs = state.model_inputs(obs)
            if inputs is not None:
                p = predictors[scene.modality](*inputs)
                if truth_change is not None and rng is not None:
                    obs_day = date_to_day(scene.acquired) + STATE_TO_EPOCH_DAYS
                    ps, ls = sample_labels(
                        p, inputs[2], truth_change, obs_day, horizon_days, 400, rng
                    )
                    samples[scene.modality][0].append(ps)
                    samples[scene.modality][1].append(ls)
        if record and p is not None:
            recorded[scene.scene_id] = p.astype(np.float16)
        state.apply(replace(obs, p_change=p))
    return state, samples, recorded


def score_state(
    state: CityState, change_date: np.ndarray, site_labels: np.ndarray, period: tuple[int, int]
) -> dict[str, Any]:
    status = state.status
    confirmed = status == Status.CONFIRMED
    to_epoch = np.where(
        state.change_day > 0, state.change_day.astype(np.int32) + STATE_TO_EPOCH_DAYS, 0
    )
    confirm = state.confirm_day
    confirm_epoch = np.where(confirm > 0, confirm.astype(np.int32) + STATE_TO_EPOCH_DAYS, 0)
    score = score_change(
        ChangeTruth(change_date, site_labels),
        ChangePrediction(confirmed, to_epoch.astype(np.int32), confirm_epoch.astype(np.int32)),
        state.grid.pixel_size**2,
        period,
    )
    out: dict[str, Any] = {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in score.to_dict().items()
    }
    out["status_counts"] = {
        k: v for k, v in state.summary().items() if k in ("none", *ALERT_STATUSES)
    }
    return out


def opera_series(
    root: Path = OPERA_DIR,
) -> Iterator[tuple[str, CityGrid, list[tuple[date, np.ndarray, np.ndarray]]]]:
    """Per OPERA burst: its grid (30 m) and the dated VV series in scaled dB with masks."""
    dates = sorted(p for p in root.iterdir() if p.is_dir())
    bursts: dict[str, list[tuple[date, Path]]] = {}
    for d in dates:
        for tif in d.glob("*_VV.tif"):
            burst = tif.name.split("_")[3]
            bursts.setdefault(burst, []).append((date.fromisoformat(d.name), tif))
    for burst, series in sorted(bursts.items()):
        arrays = []
        grid = None
        for day, tif in sorted(series):
            with rasterio.open(tif) as src:
                linear = src.read(1).astype(np.float32)
                if grid is None:
                    t = src.transform
                    grid = CityGrid(
                        epsg=src.crs.to_epsg(),
                        origin_x=t.c,
                        origin_y=t.f,
                        width=src.width,
                        height=src.height,
                        pixel_size=t.a,
                    )
                if linear.shape != grid.shape:
                    continue
            valid = s1_valid_mask(linear)
            arrays.append((day, s1_from_linear(linear[None]), valid))
        assert grid is not None
        yield burst, grid, arrays


def check_opera(params: StateParams, predictors: dict[str, Predictor]) -> dict[str, Any]:
    """Run the S1 path over every OPERA burst (one orbit, no construction)."""
    totals: dict[str, float] = {
        "bursts": 0,
        "pixels": 0,
        "observations": 0,
        "first": 0,
        "provisional": 0,
        "confirmed": 0,
        "retracted": 0,
        "ever_first_pixels": 0,
    }
    for burst, grid, series in opera_series():
        state = CityState.create(grid, params)
        ever = np.zeros(grid.shape, bool)
        for i, (day, values, valid) in enumerate(series):
            obs = Observation(f"{burst}-{i}", "s1", "137", day, values, valid)
            inputs = state.model_inputs(obs)
            p = predictors["s1"](*inputs) if inputs is not None else None
            state.apply(replace(obs, p_change=p))
            ever |= state.status > 0
        summary = state.summary()
        totals["bursts"] += 1
        totals["pixels"] += grid.n_pixels
        totals["observations"] += len(series)
        totals["ever_first_pixels"] += int(ever.sum())
        for k in ALERT_STATUSES:
            totals[k] = totals.get(k, 0) + summary[k]
    totals["ever_first_fraction"] = round(totals["ever_first_pixels"] / max(totals["pixels"], 1), 5)
    return totals


SEARCH = {
    "s1_weight": (0.0, 0.25, 0.5, 1.0),
    "h_confirm": (5.0, 7.0, 9.0),
    "min_confirm_days": (0, 60, 120),
}


# The exact search replays the models for every trial: a smaller grid.
SEARCH_EXACT = {"s1_weight": (0.0, 0.25, 0.5), "h_confirm": (7.0, 9.0), "min_confirm_days": (0,)}


def with_thresholds(
    params: StateParams, s1_weight: float, h_confirm: float, min_confirm_days: int
) -> StateParams:
    return replace(
        params,
        s1_weight=s1_weight,
        h_confirm=h_confirm,
        h_provisional=min(params.h_provisional, h_confirm),
        evidence_cap=max(params.evidence_cap, h_confirm + 3),
        min_confirm_days=min_confirm_days,
    )


def calibrate(
    archive: Path,
    out: Path,
    grid_search: bool = True,
    progress: bool = True,
    models_dir: Path | None = None,
    exact: bool = False,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    predictors, sources = load_predictors(models_dir)
    grid, scenes, change_date, site_labels, manifest = read_archive(archive, progress)
    params0 = StateParams()
    start = date.fromisoformat(manifest["params"]["start"])
    end = date.fromisoformat(manifest["params"]["end"])
    # Changes that start while the references are being built cannot be told apart from
    # the baseline: monitoring starts 60 days in.
    period = ((start - date(1970, 1, 1)).days + 60, (end - date(1970, 1, 1)).days)

    # 1. LLR mapping per modality
    rng = np.random.default_rng(0)
    _, samples, p_cache = replay(grid, scenes, params0, predictors, change_date, rng, record=True)
    mapping: dict[str, Any] = {}
    fitted = {}
    for modality in ("s2", "s1"):
        ps = np.concatenate(samples[modality][0]) if samples[modality][0] else np.zeros(0)
        ls = np.concatenate(samples[modality][1]) if samples[modality][1] else np.zeros(0, bool)
        try:
            slope, offset = fit_llr(ps, ls)
        except ValueError as exc:
            log.warning("cannot fit the %s LLR mapping (%s): keeping the defaults", modality, exc)
            slope = getattr(params0, f"{modality}_llr_slope")
            offset = getattr(params0, f"{modality}_llr_offset")
        fitted[modality] = (slope, offset)
        mapping[modality] = {
            "slope": round(slope, 4),
            "offset": round(offset, 4),
            "samples_change": int(ls.sum()),
            "samples_no_change": int((~ls).sum()),
            **{k: round(v, 4) for k, v in class_separation(ps, ls, slope, offset).items()},
        }
    params1 = replace(
        params0,
        s2_llr_slope=round(fitted["s2"][0], 3),
        s2_llr_offset=round(fitted["s2"][1], 3),
        s1_llr_slope=round(fitted["s1"][0], 3),
        s1_llr_offset=round(fitted["s1"][1], 3),
    )

    # 2. weights and thresholds
    trials = []
    space = SEARCH_EXACT if exact else SEARCH
    grid_values = (
        itertools.product(*(space[k] for k in ("s1_weight", "h_confirm", "min_confirm_days")))
        if grid_search
        else [(params1.s1_weight, params1.h_confirm, params1.min_confirm_days)]
    )
    for s1_weight, h_confirm, min_days in tqdm(
        list(grid_values), desc="threshold search", disable=not progress
    ):
        params = with_thresholds(params1, s1_weight, h_confirm, min_days)
        state, _, _ = replay(grid, scenes, params, predictors, p_cache=None if exact else p_cache)
        score = score_state(state, change_date, site_labels, period)
        trials.append(
            {"s1_weight": s1_weight, "h_confirm": h_confirm, "min_confirm_days": min_days, **score}
        )

    def rank(t: dict[str, Any]) -> tuple[float, float, float]:
        def num(x: Any) -> float:
            return -1.0 if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)

        return (num(t["object_f1"]), num(t["pixel_f1"]), -num(t["false_alerts"]))

    best = max(trials, key=rank)
    params2 = with_thresholds(
        params1, best["s1_weight"], best["h_confirm"], best["min_confirm_days"]
    )

    # 3. false alarms on the real OPERA series (S1 only, no construction)
    # The chosen parameters, replayed exactly (the model run against the state's own
    # references, no cached p).
    final_state, _, _ = replay(grid, scenes, params2, predictors)
    final = score_state(final_state, change_date, site_labels, period)

    # With every S1 weight of the search (a weight of 0 would pass vacuously).
    opera: dict[str, Any] = {"skipped": f"no data at {OPERA_DIR}"}
    if OPERA_DIR.is_dir():
        opera = {"chosen_s1_weight": params2.s1_weight}
        for weight in sorted({*SEARCH["s1_weight"], params2.s1_weight} - {0.0}):
            opera[f"s1_weight={weight}"] = check_opera(
                replace(params2, s1_weight=weight), predictors
            )
    report = {
        "created": datetime.now().isoformat(timespec="seconds"),
        "archive": str(archive),
        "archive_hash": manifest.get("param_hash"),
        "scenes": {
            "s2": sum(s.modality == "s2" for s in scenes),
            "s1": sum(s.modality == "s1" for s in scenes),
        },
        "grid": grid.to_dict(),
        "evidence_sources": sources,
        "llr_mapping": mapping,
        "monitored_period_epoch_days": period,
        "trials": trials,
        "best": best,
        "search": "exact (models re-run per trial)" if exact else "cached p of the first replay",
        "params": params2.to_dict(),
        "final_exact_replay": final,
        "opera_false_alarms": opera,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "state_calibration.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archive", type=Path, default=REPO_ROOT / "var" / "synthetic" / "state-calib"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "calibration")
    parser.add_argument("--no-search", action="store_true", help="only fit the LLR mapping")
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="folder with change_s2.onnx/change_s1.onnx (+ cards); default: "
        "the shipped artifacts, else the classical baselines",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--exact", action="store_true", help="re-run the models for every trial of a smaller grid"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = calibrate(
        args.archive,
        args.out,
        grid_search=not args.no_search,
        models_dir=args.models,
        exact=args.exact,
        progress=not args.quiet,
    )
    best = report["best"]
    print(
        json.dumps(
            {
                "evidence": report["evidence_sources"],
                "llr": report["llr_mapping"],
                "best": {
                    k: best[k]
                    for k in (
                        "s1_weight",
                        "h_confirm",
                        "min_confirm_days",
                        "pixel_f1",
                        "object_f1",
                        "false_alerts",
                        "delay_median_days",
                        "time_error_median_days",
                        "status_counts",
                    )
                },
                "final_exact_replay": {
                    k: report["final_exact_replay"][k]
                    for k in ("pixel_f1", "object_f1", "false_alerts", "delay_median_days")
                },
                "opera": report["opera_false_alarms"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
