"""Evaluating change models (onnxruntime only, no torch) and baselines on OSCD-layout data.

``evaluate_models``: the shipped (or given) ONNX models on any OSCD-layout folder; cities
that a model's card lists as training cities are flagged "(seen in training)" and kept out
of the pooled unseen figure.
``crossval_report``: the leave-cities-out figure from the fold models under ``var/``.

``evaluate_models`` thresholds p(change) at each model's card threshold. ``crossval_report``
reports two threshold schemes side by side:

- nested (the headline): for fold k, the threshold maximising pooled F1 over the held-out
  predictions of the OTHER folds (cities those folds' models never saw); fold k's own
  held-out cities never influence their threshold. The shipped all-city models get the
  threshold maximising pooled F1 over all folds' held-out predictions.
- in-sample (for comparison): each fold model's card threshold, F1-maximising on its own
  training cities (over-confident: too high for unseen cities).

Cities without S1 are evaluated with the S2 model in the S1 and dual rows, and said so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.baselines import change_vector, index_difference, otsu_change, s1_log_ratio
from models.folds import DEFAULT_FOLDS_DIR, FOLDS, THRESHOLD_METHOD
from models.metrics import (
    THRESHOLD_GRID,
    Counts,
    best_on_curve,
    count_change,
    counts_at_thresholds,
    sum_curves,
)
from models.oscd import CityPair, list_cities, load_city
from monitor.adapters.onnx_model import OnnxChangeModel, default_artifacts_dir

log = logging.getLogger(__name__)

MODEL_ROWS = ("S2 Siamese U-Net", "S1 Siamese U-Net", "S1+S2 dual-stream")
BASELINE_ROWS = (
    "S2 index diff (NDVI/NDBI, Otsu)",
    "S2 change vector (Otsu)",
    "S1 log-ratio (Otsu)",
)
PUBLISHED = {
    "published: Siamese U-Net S2 (OSCD test)": 0.579,
    "published: DS-UNet S1+S2 (OSCD test)": 0.600,
}
_ARTIFACT = {
    "S2 Siamese U-Net": "change_s2",
    "S1 Siamese U-Net": "change_s1",
    "S1+S2 dual-stream": "change_dual",
}


@dataclass
class CityResult:
    """Counts per row for one city, with notes (S2 fallback, seen in training).

    ``curves``: counts of the model rows at every ``THRESHOLD_GRID`` threshold, only for
    rows whose own model predicted the city (not the S2 fallback).
    """

    city: str
    counts: dict[str, Counts] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    curves: dict[str, list[Counts]] = field(default_factory=dict)


def load_models(model_dir: Path, threads: int = 1) -> dict[str, OnnxChangeModel]:
    """The S2 / S1 / dual models present in ``model_dir`` (by artifact name)."""
    found = {}
    for row, name in _ARTIFACT.items():
        card = model_dir / f"{name}.card.json"
        if card.exists():
            found[row] = OnnxChangeModel.load(card, threads=threads)
    return found


def _predict(row: str, model: OnnxChangeModel, city: CityPair, valid: np.ndarray) -> np.ndarray:
    if row == "S2 Siamese U-Net":
        return model.predict(city.s2_t1, city.s2_t2, valid)
    probs = []
    for a, b in zip(city.s1_t1, city.s1_t2, strict=True):
        if row == "S1 Siamese U-Net":
            probs.append(model.predict(a, b, valid))
        else:
            probs.append(model.predict_dual(city.s2_t1, city.s2_t2, a, b, valid))
    # One prediction per relative orbit; their mean is the city's p(change).
    return np.mean(probs, axis=0)


def evaluate_city(city: CityPair, models: dict[str, OnnxChangeModel]) -> CityResult:
    """Counts of every model row and baseline row for one labelled city."""
    assert city.label is not None
    valid = city.valid
    result = CityResult(city.name)
    s2_pred = None
    for row, model in models.items():
        notes = result.notes.setdefault(row, [])
        if city.name in model.info.train_cities:
            notes.append("seen in training")
        if row != "S2 Siamese U-Net" and not city.has_s1:
            if s2_pred is None and "S2 Siamese U-Net" in models:
                s2 = models["S2 Siamese U-Net"]
                s2_pred = _predict("S2 Siamese U-Net", s2, city, valid) >= s2.info.threshold
            if s2_pred is None:
                continue
            notes.append("no S1: S2 model used")
            if city.name in models["S2 Siamese U-Net"].info.train_cities:
                notes.append("seen in training")  # by the S2 model standing in
            result.counts[row] = count_change(s2_pred, city.label, valid)
            continue
        prob = _predict(row, model, city, valid)
        result.curves[row] = counts_at_thresholds(prob[valid], city.label[valid])
        pred = prob >= model.info.threshold
        if row == "S2 Siamese U-Net":
            s2_pred = pred
        result.counts[row] = count_change(pred, city.label, valid)
    result.counts[BASELINE_ROWS[0]] = count_change(
        otsu_change(index_difference(city.s2_t1, city.s2_t2), valid), city.label, valid
    )
    result.counts[BASELINE_ROWS[1]] = count_change(
        otsu_change(change_vector(city.s2_t1, city.s2_t2, valid), valid), city.label, valid
    )
    if city.has_s1:
        result.counts[BASELINE_ROWS[2]] = count_change(
            otsu_change(s1_log_ratio(city.s1_t1, city.s1_t2), valid), city.label, valid
        )
    else:
        result.notes.setdefault(BASELINE_ROWS[2], []).append("no S1")
    return result


def _fmt(c: Counts) -> str:
    return f"{c.f1:6.3f} {c.precision:6.3f} {c.recall:6.3f} {c.iou:6.3f}"


def render_table(
    results: list[CityResult], pooled: dict[str, Counts], title: str, pooled_label: str
) -> str:
    """Per-city and pooled table (F1, precision, recall, IoU of the change class)."""
    lines = [
        title,
        "",
        f"{'city':<12} {'method':<34} {'F1':>6} {'P':>6} {'R':>6} {'IoU':>6}  notes",
    ]
    for r in results:
        for row, c in r.counts.items():
            note = ", ".join(r.notes.get(row, []))
            lines.append(f"{r.city:<12} {row:<34} {_fmt(c)}  {note}")
        lines.append("")
    lines.append(pooled_label)
    for row, c in pooled.items():
        lines.append(f"{'pooled':<12} {row:<34} {_fmt(c)}")
    for row, f1 in PUBLISHED.items():
        lines.append(f"{'reference':<12} {row:<34} {f1:6.3f}")
    return "\n".join(lines)


def _pool(results: list[CityResult], skip_seen: bool) -> dict[str, Counts]:
    pooled: dict[str, Counts] = {}
    for r in results:
        for row, c in r.counts.items():
            if skip_seen and "seen in training" in r.notes.get(row, []):
                continue
            pooled[row] = pooled.get(row, Counts()) + c
    return pooled


def _as_json(results: list[CityResult], pooled: dict[str, Counts]) -> dict:
    return {
        "per_city": {
            r.city: {
                row: {**c.as_dict(), "notes": r.notes.get(row, [])} for row, c in r.counts.items()
            }
            for r in results
        },
        "pooled": {row: c.as_dict() for row, c in pooled.items()},
        "published_f1": PUBLISHED,
    }


def evaluate_models(
    data: Path,
    s1: Path | None,
    model_dir: Path | None = None,
    cities: list[str] | None = None,
    json_out: Path | None = None,
    threads: int = 1,
) -> str:
    """Evaluate the models in ``model_dir`` (default: shipped) on every labelled city."""
    model_dir = model_dir or default_artifacts_dir()
    models = load_models(model_dir, threads)
    if not models:
        log.warning("no change_*.card.json in %s: only baselines are evaluated", model_dir)
    results = []
    for name in tqdm(cities or list_cities(data), desc="evaluate", unit="city"):
        city = load_city(data, name, s1)
        if city.label is None:
            log.info("city %s has no label (cm/): skipped", name)
            continue
        results.append(evaluate_city(city, models))
    pooled = _pool(results, skip_seen=True)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(_as_json(results, pooled), indent=2))
    return render_table(
        results,
        pooled,
        f"Change-class metrics on {data} (models from {model_dir})",
        "Pooled over cities not seen in training (baselines: all cities):",
    )


def nested_thresholds(
    curves: dict[int, dict[str, list[list[Counts]]]],
) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """Thresholds by nested leave-cities-out, from held-out curves per fold and row.

    ``curves[k][row]``: the curves of fold k's held-out cities predicted by fold k's model.
    Returns (per fold: the F1-maximising threshold over the OTHER folds' curves pooled;
    overall: the F1-maximising threshold over all folds' curves pooled, for shipping).
    """
    rows = {row for per_row in curves.values() for row in per_row}
    per_fold: dict[int, dict[str, float]] = {}
    for k in curves:
        per_fold[k] = {}
        for row in sorted(rows):
            others = [c for j, per_row in curves.items() if j != k for c in per_row.get(row, [])]
            if others:
                per_fold[k][row] = THRESHOLD_GRID[best_on_curve(sum_curves(others))]
    overall = {}
    for row in sorted(rows):
        every = [c for per_row in curves.values() for c in per_row.get(row, [])]
        overall[row] = THRESHOLD_GRID[best_on_curve(sum_curves(every))]
    return per_fold, overall


def _apply_nested(
    results: list[CityResult], fold_of: dict[str, int], thresholds: dict[int, dict[str, float]]
) -> list[CityResult]:
    """The city results re-counted at their fold's nested thresholds."""
    out = []
    for r in results:
        t = thresholds.get(fold_of[r.city], {})
        nested = CityResult(r.city, notes=r.notes, curves=r.curves)
        for row, c in r.counts.items():
            # baselines have no threshold to choose; the S2 fallback uses the S2 threshold
            source = row if row in r.curves else "S2 Siamese U-Net"
            if row in MODEL_ROWS and source in r.curves and source in t:
                nested.counts[row] = r.curves[source][THRESHOLD_GRID.index(t[source])]
            else:
                nested.counts[row] = c
        out.append(nested)
    return out


def crossval_report(
    data: Path,
    s1: Path | None,
    folds_dir: Path = DEFAULT_FOLDS_DIR,
    json_out: Path | None = None,
    threads: int = 1,
    folds: list[int] | None = None,
) -> str:
    """Leave-cities-out figures: every city predicted by the fold models that never saw it.

    Both threshold schemes are reported (module docstring); the JSON (default
    ``folds_dir/crossval.json``) holds per-city and pooled counts of each, the thresholds,
    and the per-city curves on ``THRESHOLD_GRID``.
    """
    results: list[CityResult] = []
    fold_of: dict[str, int] = {}
    in_sample_t: dict[int, dict[str, float]] = {}
    curves: dict[int, dict[str, list[list[Counts]]]] = {}
    for k, held_out in enumerate(tqdm(FOLDS, desc="folds", unit="fold")):
        if folds is not None and k not in folds:
            continue
        fold_dir = Path(folds_dir) / f"fold{k}"
        models = load_models(fold_dir, threads)
        if not models:
            log.warning(
                "fold %d: no models in %s (train with 'models crossval --train')", k, fold_dir
            )
        in_sample_t[k] = {row: m.info.threshold for row, m in models.items()}
        curves[k] = {}
        for name in held_out:
            city = load_city(data, name, s1)
            if city.label is None:
                continue
            result = evaluate_city(city, models)
            for row in models:
                if "seen in training" in result.notes.get(row, []):
                    raise RuntimeError(f"fold {k}: {row} was trained on held-out city {name}")
            result.city = f"{name} (f{k})"
            fold_of[result.city] = k
            for row, curve in result.curves.items():
                curves[k].setdefault(row, []).append(curve)
            results.append(result)
    nested_t, shipped_t = nested_thresholds(curves)
    nested = _apply_nested(results, fold_of, nested_t)
    pooled = _pool(nested, skip_seen=False)
    pooled_in_sample = _pool(results, skip_seen=False)
    used = [list(f) for k, f in enumerate(FOLDS) if folds is None or k in folds]
    report = _as_json(nested, pooled) | {
        "folds": used,
        "threshold_method": THRESHOLD_METHOD,
        "per_city_in_sample": _as_json(results, pooled_in_sample)["per_city"],
        "pooled_in_sample": {row: c.as_dict() for row, c in pooled_in_sample.items()},
        "thresholds": {
            "grid": list(THRESHOLD_GRID),
            "nested_per_fold": {f"fold{k}": t for k, t in nested_t.items()},
            "in_sample_per_fold": {f"fold{k}": t for k, t in in_sample_t.items()},
            "shipped": shipped_t,
        },
        "curves": {
            r.city: {row: [[c.tp, c.fp, c.fn, c.tn] for c in cv] for row, cv in r.curves.items()}
            for r in results
        },
    }
    json_out = json_out or Path(folds_dir) / "crossval.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2))
    table = render_table(
        nested,
        pooled,
        f"Leave-cities-out cross-validation ({len(used)} folds of 2 cities, models in "
        f"{folds_dir}); thresholds by nested leave-cities-out",
        "Pooled over all held-out pixels of all folds (nested thresholds):",
    )
    lines = [table, "", "Pooled, in-sample thresholds (each fold model's training cities):"]
    lines += [f"{'pooled':<12} {row:<34} {_fmt(pooled_in_sample[row])}" for row in MODEL_ROWS
              if row in pooled_in_sample]  # fmt: skip
    lines += ["", "Thresholds (nested / in-sample) per fold:"]
    for k in nested_t:
        pairs = ", ".join(
            f"{row.split()[0]} {nested_t[k].get(row, '-')}/{in_sample_t[k].get(row, '-')}"
            for row in MODEL_ROWS
        )
        lines.append(f"  fold{k}: {pairs}")
    lines.append(f"Shipped (all folds pooled): {shipped_t}")
    return "\n".join(lines)
