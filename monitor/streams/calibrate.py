"""Calibrate the change state's parameters on the real-imagery streams, leaving cities out.

    python -m monitor.streams.calibrate --models var/models/folds --out var/calibration/streams \
        [--city ...] [--streams var/streams] [--jobs 2]

1. **Record**: every city's stream is replayed once (``monitor.streams.replay``) with the
   fold models that never saw the city and the current parameters; each scene's p(change)
   is kept (S1 scenes' too, though radar carries no weight in the defaults).
2. **LLR mappings**: per fold and modality, a class-balanced logistic fit of the truth on
   logit(p) (``monitor.domain.calibration.fit_llr``) over the scenes of the *other* folds'
   cities; the shipped mappings from all cities.
3. **Lifecycle grid** (thresholds, persistence, the S1 weight): every combination is
   replayed from the recorded p on every training city of every fold, with that fold's
   mappings; per fold, the combination with the best objective on its training cities is
   chosen, and the fold's own cities are replayed with it. The pooled figures of those
   held-out scores are the leave-cities-out result; the shipped parameters are the best on
   all cities with the all-city mappings. The recorded p is an approximation (the
   references, hence p, depend a little on the parameters); the stream benchmark through
   the whole pipeline is the final judge.

Objective (fixed before any held-out figure): pooled object F1 + pixel F1 + 0.25 x (1 -
share of provisional alerts retracted), ties broken by fewer false alerts. With
``--objective warnings`` (for a grid of the early-warning rules, which barely move what
confirms): object F1 + pixel F1 to 0.01, then meeting the retraction target (<= 0.2), then
the earliest warning among those that meet it (else the fewest retracted).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from monitor.domain.alert_scoring import AlertScore, score_alerts
from monitor.domain.calibration import fit_llr
from monitor.domain.state import CityState, Observation, StateParams
from monitor.streams.archive import StreamArchive, load_stream
from monitor.streams.replay import note_reports, site_alerts, stream_scenes
from monitor.streams.simulate import to_epoch_days

log = logging.getLogger(__name__)

# A key naming several parameters ("a,b") varies them together (values are lists).
# Provisional needs evidence >= h_provisional *or* n_provisional anomalous scenes (0: the
# count path off), so the two only make provisional harder together. The early-warning
# rule's own grid (2026-12-03, STATE.md) chose (5, 0); (4, 2) was the design before.
GRID: dict[str, list[Any]] = {
    "h_confirm": [7.0, 9.0],
    "h_provisional,n_provisional": [[5.0, 0], [4.0, 2]],
    "s1_weight": [0.0, 0.25],
}


def grid_combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid as a {parameter: value} dict."""
    combos = []
    for values in itertools.product(*grid.values()):
        combo: dict[str, Any] = {}
        for key, value in zip(grid, values, strict=True):
            names = key.split(",")
            combo.update(zip(names, value if len(names) > 1 else [value], strict=True))
        combos.append(combo)
    return combos


def objective(score: AlertScore) -> tuple[float, float]:
    share = score.retracted_share
    share = 1.0 if np.isnan(share) else share
    f = [0.0 if np.isnan(v) else v for v in (score.object_f1, score.pixel_f1)]
    return (f[0] + f[1] + 0.25 * (1 - share), -float(score.false_alerts))


RETRACTED_TARGET = 0.2   # issue 14: at most a fifth of the warnings end retracted


def objective_warnings(score: AlertScore) -> tuple[float, bool, float]:
    """For a grid of the early-warning rules (which barely move what confirms): object F1 +
    pixel F1 (to 0.01) first; then meeting the retraction target; then, among those that
    meet it, the earliest warning (median days from the true change to provisional), among
    those that do not, the fewest retracted."""
    share = score.retracted_share
    share = 1.0 if np.isnan(share) else share
    f = [0.0 if np.isnan(v) else v for v in (score.object_f1, score.pixel_f1)]
    meets = share <= RETRACTED_TARGET
    warning = score.warning_delay_median_days
    warning = 1e6 if np.isnan(warning) else warning
    return (round(f[0] + f[1], 2), meets, -warning if meets else -share)


OBJECTIVES: dict[str, Callable[[AlertScore], tuple[Any, ...]]] = {
    "alerts": objective, "warnings": objective_warnings}
OBJECTIVE_TEXT = {
    "alerts": "object F1 + pixel F1 + 0.25 (1 - retracted share)",
    "warnings": "object F1 + pixel F1 (to 0.01), then retracted share <= 0.2, then the "
                "earliest warning (else the fewest retracted)"}


def fast_replay(archive: StreamArchive, params: StateParams, p_cache: dict[str, np.ndarray],
                masks: list[tuple[str, str, str | None, Any, np.ndarray]]) -> AlertScore:
    """Replay from recorded p and valid masks only (values do not matter when p is given:
    they only feed the references, which only feed p)."""
    state = CityState.create(archive.grid, params)
    reported_ever: dict[int, dict[str, int]] = {}
    zeros: dict[int, np.ndarray] = {}
    for scene_id, modality, orbit, acquired, valid in masks:
        n_band = 6 if modality == "s2" else 1
        values = zeros.setdefault(n_band, np.zeros((n_band, *archive.grid.shape), np.float32))
        cached = p_cache.get(scene_id)
        if modality == "s1" and params.s1_weight == 0:
            cached = None  # as the worker: no S1 model runs when radar carries no weight
        p = None if cached is None else cached.astype(np.float32)
        obs = Observation(scene_id, modality, orbit, acquired, values, valid, p)  # type: ignore[arg-type]
        result = state.apply(obs)
        note_reports(reported_ever, result.sites, acquired)
    baseline_end = to_epoch_days(archive.start + timedelta(days=params.baseline_days))
    return score_alerts(archive.change_truth(), site_alerts(state, reported_ever),
                        scored=archive.inside(), pixel_area_m2=archive.grid.pixel_size ** 2,
                        period=archive.period_days(), baseline_end=baseline_end)


def llr_samples(archive: StreamArchive, p_cache: dict[str, np.ndarray],
                masks: list[tuple[str, str, str | None, Any, np.ndarray]], modality: str,
                n_per_scene: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(p, label) samples: positive = changed pixel after its change date, negative =
    unchanged or before its change; class-balanced per scene."""
    rng = np.random.default_rng(seed)
    truth = archive.change_truth().change_date.astype(np.int64)
    inside = archive.inside()
    ps, ys = [], []
    for scene_id, mod, _orbit, acquired, valid in masks:
        p = p_cache.get(scene_id)
        if mod != modality or p is None:
            continue
        day = to_epoch_days(acquired)
        ok = valid & inside & np.isfinite(p)
        pos = ok & (truth > 0) & (truth <= day)
        neg = ok & ((truth == 0) | (truth > day))
        for mask, label in ((pos, True), (neg, False)):
            idx = np.flatnonzero(mask)
            if idx.size > n_per_scene:
                idx = rng.choice(idx, n_per_scene, replace=False)
            ps.append(p.ravel()[idx].astype(np.float32))
            ys.append(np.full(idx.size, label))
    if not ps:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    return np.concatenate(ps), np.concatenate(ys)


# What the grid's worker processes read (set before the pool forks: shared copy-on-write,
# not pickled per task).
_WORK: dict[str, Any] = {}


def _grid_task(task: tuple[int, str, StateParams]) -> tuple[int, AlertScore]:
    n, city, params = task
    return n, fast_replay(_WORK["archives"][city], params, _WORK["caches"][city],
                          _WORK["masks"][city])


def run_grid(tasks: list[tuple[str, StateParams]], jobs: int,
             progress: bool = True) -> list[AlertScore]:
    """Every (city, parameters) replay, in ``jobs`` forked processes (1: in this one)."""
    from tqdm import tqdm

    scores: dict[int, AlertScore] = {}
    numbered = [(n, city, params) for n, (city, params) in enumerate(tasks)]
    with tqdm(total=len(tasks), unit="replay", desc="lifecycle grid",
              disable=not progress) as bar:
        if jobs <= 1:
            for n, score in map(_grid_task, numbered):
                scores[n] = score
                bar.update()
        else:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for n, score in pool.imap_unordered(_grid_task, numbered):
                    scores[n] = score
                    bar.update()
    return [scores[n] for n in range(len(tasks))]


def format_report(report: dict[str, Any]) -> str:
    """Markdown: each city held out (the parameters its fold chose) next to the same
    recordings with the parameters as they were."""
    cols = ("object_precision", "object_recall", "object_f1", "pixel_f1",
            "time_error_median_days", "delay_median_days", "warning_delay_median_days",
            "false_alerts_per_km2_year", "retracted_share", "confirmed_in_baseline")
    head = ("obj P", "obj R", "obj F1", "px F1", "ToC d", "delay d", "warning d", "FA/km2/yr",
            "retracted", "in baseline")
    lines = ["| city | fold: parameters chosen on the other folds | "
             + " | ".join(head) + " | before: obj F1 / px F1 / retracted |",
             "|---|---|" + "---|" * len(head) + "---|"]

    def cells(f: dict[str, Any]) -> str:
        return " | ".join(str(f[c]) for c in cols)

    before = report["before"]["per_city"]
    for fold, entry in report["folds"].items():
        chosen = ", ".join(f"{k} {v}" for k, v in entry["params"].items())
        for city, f in entry["per_city"].items():
            b = before[city]
            lines.append(f"| {city} | {fold}: {chosen} | {cells(f)} | {b['object_f1']} / "
                         f"{b['pixel_f1']} / {b['retracted_share']} |")
    b = report["before"]["pooled"]
    lines.append(f"| **pooled, held out** | leave-cities-out | {cells(report['leave_cities_out'])}"
                 f" | {b['object_f1']} / {b['pixel_f1']} / {b['retracted_share']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from monitor.settings import load_settings
    from monitor.streams.benchmark import choose_models
    from monitor.streams.replay import load_predictors, replay_stream

    ap = argparse.ArgumentParser(prog="python -m monitor.streams.calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, required=True, help="folder of fold model sets")
    ap.add_argument("--streams", type=Path, default=Path("var/streams"))
    ap.add_argument("--cache", type=Path, default=Path("var/streams-cache"))
    ap.add_argument("--out", type=Path, default=Path("var/calibration/streams"))
    ap.add_argument("--city", action="append")
    ap.add_argument("--base", default="{}", help="JSON of parameters held fixed")
    ap.add_argument("--grid", default=None,
                    help="JSON object of lifecycle parameters and the values to try "
                         f"(default {json.dumps(GRID)})")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the grid's replays")
    ap.add_argument("--rank-with", choices=["fold", "all"], default="fold",
                    help="LLR mapping the combinations are ranked with on a fold's training "
                         "cities: the fold's own (default, exact) or the all-city one (a "
                         "sixth of the replays, the held-out cities leak into the ranking)")
    ap.add_argument("--llr", choices=["fit", "keep"], default="fit",
                    help="LLR mappings: fitted per fold on the other folds' cities (default), "
                         "or the base parameters' kept for every fold (a lifecycle-only "
                         "calibration: one replay per combination and city)")
    ap.add_argument("--objective", choices=sorted(OBJECTIVES), default="alerts",
                    help="alerts (default): object F1 + pixel F1 + 0.25 (1 - retracted "
                         "share); warnings: F1s, then the retraction target (<= 0.2), then "
                         "the earliest warning (for grids of the provisional rules)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--record-only", action="store_true",
                    help="only record the p(change) of the cities (a second process can "
                         "record others in parallel)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings(None)
    base = StateParams.from_dict(json.loads(args.base))
    cities = args.city or sorted(p.name for p in args.streams.iterdir()
                                 if (p / "manifest.json").is_file())
    args.out.mkdir(parents=True, exist_ok=True)
    archives: dict[str, StreamArchive] = {}
    folds: dict[str, str] = {}
    caches: dict[str, dict[str, np.ndarray]] = {}
    masks: dict[str, list[Any]] = {}
    for city in cities:
        archive = load_stream(args.streams / city)
        archives[city] = archive
        choice = choose_models(city, args.models, settings)
        folds[city] = choice.folder
        # keyed by the stream's build too: a rebuilt stream is recorded again
        build = str(archive.manifest.get("param_hash", "unknown"))[:12]
        path = args.out / f"p_{city}_{choice.folder}_{build}.pkl"
        if path.exists():
            caches[city] = pickle.loads(path.read_bytes())
        else:
            t = time.perf_counter()
            models = load_predictors(choice.s2, choice.s1, choice.dual)
            _, recorded = replay_stream(archive, base, models, cache_dir=args.cache / city,
                                        record=True)
            caches[city] = recorded
            tmp = path.with_name(path.name + f".{os.getpid()}.part")
            tmp.write_bytes(pickle.dumps(recorded))
            os.replace(tmp, path)
            log.info("recorded %s with %s in %.0f s", city, choice.folder, time.perf_counter() - t)
        if args.record_only:
            continue
        masks[city] = [(s.scene_id, s.modality, s.orbit, s.acquired, s.valid)
                       for s in stream_scenes(archive, args.cache / city)]
    if args.record_only:
        return 0
    # 2. LLR per fold (and modality) from the other folds' cities
    fold_names = sorted(set(folds.values()))
    llr: dict[str, dict[str, tuple[float, float]]] = {f: {} for f in [*fold_names, "all"]}
    for modality in ("s2", "s1") if args.llr == "fit" else ():
        samples = {c: llr_samples(archives[c], caches[c], masks[c], modality) for c in cities}
        for fold in llr:
            train = [c for c in cities if folds[c] != fold]
            p = np.concatenate([samples[c][0] for c in train])
            y = np.concatenate([samples[c][1] for c in train])
            if y.all() or not y.any():
                log.warning("no %s samples of both classes for %s: its LLR mapping stays",
                            modality, fold)
                continue
            llr[fold][modality] = fit_llr(p, y)
            log.info("%s LLR for %s (from %s): slope %.3f offset %.3f", modality, fold,
                     ",".join(train), *llr[fold][modality])
    # 3. lifecycle grid, ranked on each fold's training cities with that fold's mapping
    # ("--rank-with all": with the all-city mapping, 5/6 fewer replays, a mild leak)
    grid = json.loads(args.grid) if args.grid else GRID
    combos = grid_combinations(grid)

    def params_for(combo: dict[str, Any], fold: str) -> StateParams:
        h_prov = combo.get("h_provisional", base.h_provisional)
        mapping: dict[str, Any] = {}
        for modality, (slope, offset) in llr[fold].items():
            mapping[f"{modality}_llr_slope"] = round(slope, 4)
            mapping[f"{modality}_llr_offset"] = round(offset, 4)
        return replace(base, **mapping, **combo,
                       h_first=min(combo.get("h_first", base.h_first), h_prov))

    # with --llr keep every fold's mapping is the base one: one replay per (combination, city)
    same = args.rank_with == "all" or args.llr == "keep"
    rank_folds = {f: ("all" if same else f) for f in fold_names}
    rank_folds["all"] = "all"
    tasks = sorted({(k, c, mapping) for f, mapping in rank_folds.items()
                    for k in range(len(combos)) for c in cities if folds[c] != f})
    t0 = time.perf_counter()
    _WORK.update(archives=archives, caches=caches, masks=masks)
    task_params = [(c, params_for(combos[k], m)) for k, c, m in tasks]
    raw = run_grid(task_params, args.jobs, progress=not args.no_progress)
    scores = {(c, k, m): score for (k, c, m), score in zip(tasks, raw, strict=True)}
    # every replay by (city, parameters): the held-out and "before" replays reuse the grid's
    # where the parameters are the same (with --llr keep, all of the held-out ones)
    replayed = dict(zip(task_params, raw, strict=True))

    def replay(c: str, params: StateParams) -> AlertScore:
        if (c, params) not in replayed:
            replayed[(c, params)] = fast_replay(archives[c], params, caches[c], masks[c])
        return replayed[(c, params)]
    log.info("%d combinations, %d replays in %.0f s", len(combos), len(tasks),
             time.perf_counter() - t0)

    def pooled(k: int, chosen: list[str], mapping: str) -> AlertScore:
        total = AlertScore()
        for c in chosen:
            total.add(scores[(c, k, mapping)])
        return total

    rank = OBJECTIVES[args.objective]
    held_out = AlertScore()
    per_fold: dict[str, Any] = {}
    for fold in fold_names:
        train = [c for c in cities if folds[c] != fold]
        test = [c for c in cities if folds[c] == fold]
        best = max(range(len(combos)),
                   key=lambda k: rank(pooled(k, train, rank_folds[fold])))
        result = AlertScore()
        per_city = {}
        chosen = params_for(combos[best], fold)
        for c in test:
            s_c = replay(c, chosen)
            result.add(s_c)
            per_city[c] = s_c.figures()
        held_out.add(result)
        per_fold[fold] = {"cities": test, "params": combos[best], "llr": llr[fold],
                          "state_params": {k: v for k, v in chosen.to_dict().items()
                                           if k in combos[best] or "llr" in k or k == "h_first"},
                          "held_out": result.figures(), "per_city": per_city}
        log.info("%s: chose %s -> held out %s", fold, combos[best], result.figures())
    # the same cities and recordings with the parameters as they were (side by side)
    before = AlertScore()
    before_per_city = {}
    for c in cities:
        s_c = replay(c, base)
        before.add(s_c)
        before_per_city[c] = s_c.figures()
    best_all = max(range(len(combos)), key=lambda k: rank(pooled(k, cities, "all")))
    report = {"grid": grid, "objective": OBJECTIVE_TEXT[args.objective],
              "rank_with": args.rank_with, "llr": args.llr, "base": base.to_dict(),
              "folds": per_fold,
              "leave_cities_out": held_out.figures(),
              "before": {"params": "the base parameters (defaults unless --base)",
                         "pooled": before.figures(), "per_city": before_per_city},
              "shipped": {"params": combos[best_all], "llr": llr["all"],
                          "state_params": params_for(combos[best_all], "all").to_dict(),
                          "in_sample": pooled(best_all, cities, "all").figures()},
              "grid_scores": {json.dumps(combos[k]): pooled(k, cities, "all").figures()
                              for k in range(len(combos))},
              "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "calibration.json").write_text(json.dumps(report, indent=1))
    table = format_report(report)
    (args.out / "calibration.md").write_text(table + "\n")
    print(table)
    print(json.dumps({"before": report["before"]["pooled"],
                      "leave_cities_out": report["leave_cities_out"],
                      "shipped": report["shipped"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
